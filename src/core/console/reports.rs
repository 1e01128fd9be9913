//! Renderers for the node's own console reports, in the reference's text
//! formats and as XML. They take plain data, so the same report can be
//! produced by a running node, a simulated one, or a test.

use std::net::SocketAddr;

use super::{Mode, xml_escape};

/// What `cluster info` shows of a node that is not (yet) part of a larger view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoView {
    pub cluster_port: u16,
    /// The bus private names of the main and shared-data connections,
    /// `#ec0-<pid>#<node>` and `#ec1-<pid>#<node>` in the reference.
    pub main_private_name: String,
    pub shared_private_name: String,
    pub control_group: String,
    pub cluster_group: String,
    pub leader: Option<String>,
    pub log_group: Option<String>,
}

/// The reference's private-name form: `#ec<conn>-<pid, 5 digits>#<node>`.
pub fn private_name(connection: u8, pid: u32, nodename: &str) -> String {
    format!("#ec{connection}-{pid:05}#{nodename}")
}

/// `cluster info`, in the reference's format:
/// ```text
/// Daemon: 4802 [m:#ec0-22787#labrat-1,s:#ec1-22787#labrat-1]
/// Control Group: ec_console
/// Cluster Group: ec_cluster (labrat-4 is leader)
/// Logger Group: none
/// ```
pub fn info(v: &InfoView, mode: Mode) -> String {
    match mode {
        Mode::Text => {
            let leader = v
                .leader
                .as_deref()
                .map(|l| format!(" ({l} is leader)"))
                .unwrap_or_else(|| " (no leader)".into());
            format!(
                "Daemon: {} [m:{},s:{}]\nControl Group: {}\nCluster Group: {}{}\nLogger Group: {}\n",
                v.cluster_port,
                v.main_private_name,
                v.shared_private_name,
                v.control_group,
                v.cluster_group,
                leader,
                v.log_group.as_deref().unwrap_or("none"),
            )
        }
        Mode::Xml => format!(
            "<cluster_info>\n  <daemon port=\"{}\" main=\"{}\" shared=\"{}\"/>\n  <control_group>{}</control_group>\n  <cluster_group leader=\"{}\">{}</cluster_group>\n  <logger_group>{}</logger_group>\n</cluster_info>\n",
            v.cluster_port,
            xml_escape(&v.main_private_name),
            xml_escape(&v.shared_private_name),
            xml_escape(&v.control_group),
            xml_escape(v.leader.as_deref().unwrap_or("")),
            xml_escape(&v.cluster_group),
            xml_escape(v.log_group.as_deref().unwrap_or("none")),
        ),
    }
}

/// A single value such as `cluster nodename`: the value on a line, or one
/// XML element.
pub fn value(element: &str, text: &str, mode: Mode) -> String {
    match mode {
        Mode::Text => format!("{text}\n"),
        Mode::Xml => format!("<{element}>{}</{element}>\n", xml_escape(text)),
    }
}

/// `cluster nodeaddr`: the cluster service address, `10.80.116.201:4802`.
pub fn nodeaddr(addr: SocketAddr, mode: Mode) -> String {
    value("nodeaddr", &addr.to_string(), mode)
}

/// `version`, in the style of the reference's banner.
pub fn version(version: &str, mode: Mode) -> String {
    match mode {
        Mode::Text => format!("eccluster version: {version}\n"),
        Mode::Xml => format!("<version>{}</version>\n", xml_escape(version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> InfoView {
        InfoView {
            cluster_port: 4802,
            main_private_name: private_name(0, 22787, "labrat-1"),
            shared_private_name: private_name(1, 22787, "labrat-1"),
            control_group: "ec_console".into(),
            cluster_group: "ec_cluster".into(),
            leader: Some("labrat-4".into()),
            log_group: None,
        }
    }

    #[test]
    fn info_matches_the_reference_sample() {
        // momentum-notes.md §3.3, verbatim apart from the port (4803 there was Spread's).
        let expected = "Daemon: 4802 [m:#ec0-22787#labrat-1,s:#ec1-22787#labrat-1]\n\
                        Control Group: ec_console\n\
                        Cluster Group: ec_cluster (labrat-4 is leader)\n\
                        Logger Group: none\n";
        assert_eq!(info(&view(), Mode::Text), expected);
    }

    #[test]
    fn private_names_pad_the_pid_to_five_digits() {
        assert_eq!(private_name(0, 8422, "uhalehe"), "#ec0-08422#uhalehe");
    }

    #[test]
    fn xml_forms_escape_their_text() {
        let mut v = view();
        v.cluster_group = "a<b".into();
        assert!(
            info(&v, Mode::Xml)
                .contains("<cluster_group leader=\"labrat-4\">a&lt;b</cluster_group>")
        );
        assert_eq!(
            value("nodename", "x&y", Mode::Xml),
            "<nodename>x&amp;y</nodename>\n"
        );
        assert_eq!(
            nodeaddr("10.80.116.201:4802".parse().unwrap(), Mode::Text),
            "10.80.116.201:4802\n"
        );
    }
}
