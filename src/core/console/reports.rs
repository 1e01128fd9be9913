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
pub fn info(v: &InfoView, status: Option<&ClusterStatus>, mode: Mode) -> String {
    let mut out = info_head(v, mode);
    if let Some(s) = status {
        out.push_str(&self::status(s, mode));
    }
    if mode == Mode::Xml {
        out.push_str("</cluster_info>\n");
    }
    out
}

fn info_head(v: &InfoView, mode: Mode) -> String {
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
            "<cluster_info>\n  <daemon port=\"{}\" main=\"{}\" shared=\"{}\"/>\n  <control_group>{}</control_group>\n  <cluster_group leader=\"{}\">{}</cluster_group>\n  <logger_group>{}</logger_group>\n",
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

/// What `policy show` reports about the policy engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    /// Script names and source sizes, in load order.
    pub scripts: Vec<(String, usize)>,
    /// Counts reloads: states of an older epoch are replaced on their
    /// thread's next call.
    pub epoch: u64,
    /// Live Lua states (one per thread that called in).
    pub states: usize,
    pub calls: u64,
    pub errors: u64,
    /// With its script and line, or the limit it hit.
    pub last_error: Option<String>,
    pub instruction_budget: u32,
    pub memory_limit: usize,
}

/// `policy show`.
pub fn policy_show(p: &PolicyStatus, mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            out.push_str(&format!(
                "Policy scripts: {} (epoch {})\n",
                p.scripts.len(),
                p.epoch
            ));
            for (name, bytes) in &p.scripts {
                out.push_str(&format!("  {name} ({bytes} bytes)\n"));
            }
            out.push_str(&format!(
                "Limits: {} instructions per call, {} bytes per Lua state\n\
                 Lua states: {}\n\
                 Calls: {}, errors: {}\n\
                 Last error: {}\n",
                p.instruction_budget,
                p.memory_limit,
                p.states,
                p.calls,
                p.errors,
                p.last_error.as_deref().unwrap_or("none")
            ));
        }
        Mode::Xml => {
            out.push_str(&format!(
                "<policy epoch=\"{}\" states=\"{}\" calls=\"{}\" errors=\"{}\" instruction_budget=\"{}\" memory_limit=\"{}\">\n",
                p.epoch, p.states, p.calls, p.errors, p.instruction_budget, p.memory_limit
            ));
            for (name, bytes) in &p.scripts {
                out.push_str(&format!(
                    "  <script name=\"{}\" bytes=\"{bytes}\"/>\n",
                    xml_escape(name)
                ));
            }
            if let Some(e) = &p.last_error {
                out.push_str(&format!("  <last_error>{}</last_error>\n", xml_escape(e)));
            }
            out.push_str("</policy>\n");
        }
    }
    out
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
        assert_eq!(info(&view(), None, Mode::Text), expected);
    }

    #[test]
    fn policy_show_lists_scripts_counts_and_the_last_error() {
        let p = PolicyStatus {
            scripts: vec![("set_binding".into(), 1200)],
            epoch: 2,
            states: 3,
            calls: 40,
            errors: 1,
            last_error: Some("set_binding.lua:7: <oops>".into()),
            instruction_budget: 1_000_000,
            memory_limit: 16 << 20,
        };
        assert_eq!(
            policy_show(&p, Mode::Text),
            "Policy scripts: 1 (epoch 2)\n  set_binding (1200 bytes)\n\
             Limits: 1000000 instructions per call, 16777216 bytes per Lua state\n\
             Lua states: 3\nCalls: 40, errors: 1\n\
             Last error: set_binding.lua:7: <oops>\n"
        );
        let xml = policy_show(&p, Mode::Xml);
        assert!(
            xml.contains("<script name=\"set_binding\" bytes=\"1200\"/>")
                && xml.contains("<last_error>set_binding.lua:7: &lt;oops&gt;</last_error>"),
            "{xml}"
        );
    }

    #[test]
    fn private_names_pad_the_pid_to_five_digits() {
        assert_eq!(private_name(0, 8422, "uhalehe"), "#ec0-08422#uhalehe");
    }

    #[test]
    fn log_group_lists_time_sender_log_and_a_printable_line() {
        use crate::core::logs::group::GroupLine;
        use std::time::{Duration, UNIX_EPOCH};
        let lines = [
            GroupLine {
                sender: "n1".into(),
                log: "paniclog".into(),
                time: UNIX_EPOCH + Duration::from_micros(1_700_000_000_500_000),
                line: b"1700000000@n1: assertion failed\n".to_vec(),
            },
            GroupLine {
                sender: "n<2>".into(),
                log: "paniclog".into(),
                time: UNIX_EPOCH + Duration::from_secs(1_700_000_061),
                line: b"bad \xff\nforged\x1b".to_vec(),
            },
        ];
        assert_eq!(
            log_group(Some("panics"), &lines, Mode::Text),
            "Logger Group: panics\n\
             2023-11-14T22:13:20Z n1 paniclog: 1700000000@n1: assertion failed\n\
             2023-11-14T22:14:21Z n<2> paniclog: bad \u{fffd}\\nforged\\u{1b}\n"
        );
        assert_eq!(
            log_group(Some("a&b"), &lines[1..], Mode::Xml),
            "<log_group name=\"a&amp;b\">\n  \
             <line time=\"2023-11-14T22:14:21Z\" node=\"n&lt;2&gt;\" log=\"paniclog\">bad \u{fffd}\\nforged\\u{1b}</line>\n\
             </log_group>\n"
        );
        assert_eq!(log_group(None, &[], Mode::Text), "Logger Group: none\n");
        assert_eq!(
            log_group(None, &[], Mode::Xml),
            "<log_group>\n</log_group>\n"
        );
    }

    #[test]
    fn xml_forms_escape_their_text() {
        let mut v = view();
        v.cluster_group = "a<b".into();
        let xml = info(&v, None, Mode::Xml);
        assert!(xml.contains("<cluster_group leader=\"labrat-4\">a&lt;b</cluster_group>"));
        assert!(xml.ends_with("</cluster_info>\n"));
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

/// One node as `cluster membership` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub private_name: String,
    pub name: String,
    pub subcluster: String,
    /// `Momentum` or `Manager`.
    pub node_type: String,
    pub version: String,
    pub address: SocketAddr,
    pub groups: Vec<String>,
}

/// The groups a node belongs to, in the reference's order: an MTA node is in
/// the control group, its subcluster's group `ec_sc_<subcluster>` and the
/// cluster group (and the log group, when one is set); a manager only in the
/// cluster group.
pub fn groups(
    manager: bool,
    control: &str,
    subcluster: &str,
    cluster: &str,
    log: Option<&str>,
) -> Vec<String> {
    let mut g = Vec::new();
    if !manager {
        g.push(control.to_string());
        g.push(format!("ec_sc_{subcluster}"));
    }
    g.push(cluster.to_string());
    if let Some(l) = log {
        g.push(l.to_string());
    }
    g
}

/// `cluster membership`, in the reference's format: one block per node,
/// separated by a blank line.
pub fn membership(members: &[MemberView], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&format!(
                    "Private Name: {}\nNode Name: {}\nSubcluster: {}\nNode Type: {}\nVersion: {}\nAddress: {}\nGroups: {}\n",
                    m.private_name,
                    m.name,
                    m.subcluster,
                    m.node_type,
                    m.version,
                    m.address,
                    m.groups.join(", ")
                ));
            }
        }
        Mode::Xml => {
            out.push_str("<membership>\n");
            for m in members {
                out.push_str(&format!(
                    "  <node private_name=\"{}\" name=\"{}\" subcluster=\"{}\" type=\"{}\" version=\"{}\" address=\"{}\">\n",
                    xml_escape(&m.private_name),
                    xml_escape(&m.name),
                    xml_escape(&m.subcluster),
                    xml_escape(&m.node_type),
                    xml_escape(&m.version),
                    m.address
                ));
                for g in &m.groups {
                    out.push_str(&format!("    <group>{}</group>\n", xml_escape(g)));
                }
                out.push_str("  </node>\n");
            }
            out.push_str("</membership>\n");
        }
    }
    out
}

/// What `cluster info` adds after the reference's four lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub view_number: u64,
    pub view_id: u64,
    pub view_members: Vec<String>,
    /// Members holding another view (empty when agreed).
    pub disagreeing: Vec<(String, u64)>,
    pub quorum_up: usize,
    pub quorum_configured: usize,
    pub quorum_needed: usize,
    pub quorum_mode: String,
    pub suspect: Vec<String>,
    pub down: Vec<String>,
    /// Option names that differ, per node.
    pub mismatches: Vec<(String, Vec<String>)>,
    pub rejected: Vec<(String, u64)>,
    pub late_timer_events: u64,
    pub secured: bool,
    pub heartbeats_sent: u64,
    pub heartbeat_bytes: u64,
}

/// The status lines of `cluster info` (text), or its XML elements.
pub fn status(s: &ClusterStatus, mode: Mode) -> String {
    let agreed = s.disagreeing.is_empty();
    let quorum = s.quorum_up >= s.quorum_needed;
    match mode {
        Mode::Text => {
            let mut out = format!(
                "View: {} ({:016x}), {} members: {}\n",
                s.view_number,
                s.view_id,
                s.view_members.len(),
                s.view_members.join(", ")
            );
            if agreed {
                out.push_str("View Agreement: agreed by all members\n");
            } else {
                let who: Vec<String> = s
                    .disagreeing
                    .iter()
                    .map(|(n, id)| format!("{n} holds {id:016x}"))
                    .collect();
                out.push_str(&format!(
                    "View Agreement: not agreed ({})\n",
                    who.join(", ")
                ));
            }
            out.push_str(&format!(
                "Quorum: {} ({} of {} configured nodes up, {} needed; mode {})\n",
                if quorum { "yes" } else { "no" },
                s.quorum_up,
                s.quorum_configured,
                s.quorum_needed,
                s.quorum_mode
            ));
            if !s.suspect.is_empty() || !s.down.is_empty() {
                out.push_str(&format!(
                    "Suspect: {}\nDown: {}\n",
                    none_or_list(&s.suspect),
                    none_or_list(&s.down)
                ));
            }
            if s.mismatches.is_empty() {
                out.push_str("Config Mismatch: none\n");
            } else {
                for (node, options) in &s.mismatches {
                    out.push_str(&format!(
                        "Config Mismatch: {node} differs in {}\n",
                        options.join(", ")
                    ));
                }
            }
            out.push_str(&format!(
                "Security: {}\n",
                if s.secured {
                    "sealed (cluster key)"
                } else {
                    "none (no cluster key)"
                }
            ));
            let rejected: Vec<String> =
                s.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out.push_str(&format!(
                "Rejected: {}\n",
                if rejected.is_empty() {
                    "none".into()
                } else {
                    rejected.join(", ")
                }
            ));
            out.push_str(&format!("Late Timers: {}\n", s.late_timer_events));
            out.push_str(&format!(
                "Heartbeats Sent: {} ({} bytes)\n",
                s.heartbeats_sent, s.heartbeat_bytes
            ));
            out
        }
        Mode::Xml => {
            let mut out = format!(
                "  <view number=\"{}\" id=\"{:016x}\" agreed=\"{agreed}\">\n",
                s.view_number, s.view_id
            );
            for m in &s.view_members {
                out.push_str(&format!("    <member>{}</member>\n", xml_escape(m)));
            }
            out.push_str("  </view>\n");
            out.push_str(&format!(
                "  <quorum has=\"{quorum}\" up=\"{}\" configured=\"{}\" needed=\"{}\" mode=\"{}\"/>\n",
                s.quorum_up, s.quorum_configured, s.quorum_needed, s.quorum_mode
            ));
            for (node, options) in &s.mismatches {
                out.push_str(&format!(
                    "  <config_mismatch node=\"{}\">{}</config_mismatch>\n",
                    xml_escape(node),
                    xml_escape(&options.join(","))
                ));
            }
            for (reason, n) in &s.rejected {
                out.push_str(&format!(
                    "  <rejected reason=\"{}\">{n}</rejected>\n",
                    xml_escape(reason)
                ));
            }
            out
        }
    }
}

fn none_or_list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Answers gathered from several nodes (`broadcast`, `retrieve`): a header
/// line per node, then its output.
pub fn gathered(answers: &[(String, Result<String, String>)], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            for (node, answer) in answers {
                match answer {
                    Ok(text) => {
                        out.push_str(&format!("[{node}]\n{text}"));
                        if !text.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    Err(e) => out.push_str(&format!("[{node}] error: {e}\n")),
                }
            }
        }
        Mode::Xml => {
            out.push_str("<responses>\n");
            for (node, answer) in answers {
                let (ok, text) = match answer {
                    Ok(t) => (true, t),
                    Err(e) => (false, e),
                };
                out.push_str(&format!(
                    "  <response node=\"{}\" ok=\"{ok}\">{}</response>\n",
                    xml_escape(node),
                    xml_escape(text)
                ));
            }
            out.push_str("</responses>\n");
        }
    }
    out
}

#[cfg(test)]
mod membership_tests {
    use super::*;

    #[test]
    fn membership_matches_the_reference_layout() {
        let m = MemberView {
            private_name: private_name(0, 20768, "pono"),
            name: "pono".into(),
            subcluster: "default".into(),
            node_type: "Momentum".into(),
            version: "0.1.0".into(),
            address: "10.79.0.20:4802".parse().unwrap(),
            groups: groups(false, "ec_console", "default", "ec_cluster", None),
        };
        let expected = "Private Name: #ec0-20768#pono\nNode Name: pono\nSubcluster: default\nNode Type: Momentum\n\
                        Version: 0.1.0\nAddress: 10.79.0.20:4802\nGroups: ec_console, ec_sc_default, ec_cluster\n";
        assert_eq!(membership(std::slice::from_ref(&m), Mode::Text), expected);
        let two = membership(&[m.clone(), m], Mode::Text);
        assert!(
            two.contains("ec_cluster\n\nPrivate Name"),
            "blocks are separated by a blank line"
        );
        assert_eq!(
            groups(true, "ec_console", "default", "ec_cluster", None),
            ["ec_cluster"]
        );
    }

    #[test]
    fn gathered_answers_name_each_node() {
        let out = gathered(
            &[
                ("a".into(), Ok("a\n".into())),
                ("b".into(), Err("no answer".into())),
            ],
            Mode::Text,
        );
        assert_eq!(out, "[a]\na\n[b] error: no answer\n");
    }
}

/// `cluster duravip show`, in the reference's format (momentum-notes §1.6):
/// a header line per IP `<ip>/<name>[/<name>...]: (<flags>) <services>`, the
/// two stability lines, then one line per candidate node: ` *  ` for the
/// owner or four spaces, a TAB, the node name and its services.
pub fn duravip_show(states: &[crate::core::duravip::IpState], mode: Mode) -> String {
    let services = |s: &[crate::core::duravip::Service]| {
        s.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = String::new();
    match mode {
        Mode::Text => {
            out.push_str("DuraVIP State:\n");
            for s in states {
                let mut head = s.ip.to_string();
                for n in &s.names {
                    head.push('/');
                    head.push_str(n);
                }
                out.push_str(&format!(
                    "{head}: ({}) {}\n\t[view stable for {} seconds]\n\t[configuration stable for {} seconds]\n",
                    flag_words(&s.flags).join(","),
                    services(&s.services),
                    s.view_stable_ms / 1000,
                    s.config_stable_ms / 1000,
                ));
                for (node, svc) in &s.candidates {
                    let mark = if s.owner.as_deref() == Some(node.as_str()) {
                        " *  "
                    } else {
                        "    "
                    };
                    out.push_str(&format!("{mark}\t{node} {}\n", services(svc)));
                }
            }
        }
        Mode::Xml => {
            out.push_str("<duravip>\n");
            for s in states {
                let moving = s.moving_to.as_deref().map_or(String::new(), |n| {
                    format!(" moving_to=\"{}\"", xml_escape(n))
                });
                out.push_str(&format!(
                    "  <ip address=\"{}\" flags=\"{}\" owner=\"{}\" view_stable=\"{}\" configuration_stable=\"{}\"{moving}>\n",
                    s.ip,
                    flag_words(&s.flags).join(","),
                    xml_escape(s.owner.as_deref().unwrap_or("")),
                    s.view_stable_ms / 1000,
                    s.config_stable_ms / 1000
                ));
                for n in &s.names {
                    out.push_str(&format!("    <name>{}</name>\n", xml_escape(n)));
                }
                for (node, svc) in &s.candidates {
                    out.push_str(&format!(
                        "    <candidate node=\"{}\" services=\"{}\" owner=\"{}\"/>\n",
                        xml_escape(node),
                        xml_escape(&services(svc)),
                        s.owner.as_deref() == Some(node.as_str())
                    ));
                }
                out.push_str("  </ip>\n");
            }
            out.push_str("</duravip>\n");
        }
    }
    out
}

/// `cluster shared list`, in the reference's format: each object's name
/// right-aligned in 30 columns, then `[lazy, <kind> w/ snapshots]`.
pub fn shared_list(objects: &[(String, &str)], mode: Mode) -> String {
    match mode {
        Mode::Text => {
            let mut out = String::from("Currently managed objects:\n");
            for (name, kind) in objects {
                out.push_str(&format!("{name:>30} [lazy, {kind} w/ snapshots]\n"));
            }
            out
        }
        Mode::Xml => {
            let mut out = String::from("<shared>\n");
            for (name, kind) in objects {
                out.push_str(&format!(
                    "  <object name=\"{}\" kind=\"{}\" lazy=\"true\" snapshots=\"true\"/>\n",
                    xml_escape(name),
                    xml_escape(kind)
                ));
            }
            out.push_str("</shared>\n");
            out
        }
    }
}

/// `cluster shared show OBJ [from NODE]`, in the reference's formats: a
/// header naming the object, its kind and the view, then per row, for a
/// cidrtree the count right-aligned in 7 columns, 25 spaces and the
/// prefix; for every other kind `<key>:` right-aligned to column 61 and
/// the count in 13 more.
pub fn shared_show(
    name: &str,
    kind: &str,
    view: &str,
    rows: &[(String, String)],
    mode: Mode,
) -> String {
    match mode {
        Mode::Text => {
            let mut out = format!("lazy, snapped {kind} '{name}', view '{view}'\n");
            for (key, count) in rows {
                if kind == "cidrtree" {
                    out.push_str(&format!("{count:>7}{:25}{key}\n", ""));
                } else {
                    out.push_str(&format!("{:>61}{count:>13}\n", format!("{key}:")));
                }
            }
            out
        }
        Mode::Xml => {
            let mut out = format!(
                "<shared_object name=\"{}\" kind=\"{}\" view=\"{}\">\n",
                xml_escape(name),
                xml_escape(kind),
                xml_escape(view)
            );
            for (key, count) in rows {
                out.push_str(&format!(
                    "  <row key=\"{}\" value=\"{}\"/>\n",
                    xml_escape(key),
                    xml_escape(count)
                ));
            }
            out.push_str("</shared_object>\n");
            out
        }
    }
}

/// One published journal in `cluster show logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBlock {
    /// The log's name (the `logs` key).
    pub name: String,
    /// Bytes of its files on disk.
    pub bytes: u64,
    /// Each subscriber and its checkpoint (`%08x:%08x`), or why they could
    /// not be read.
    pub subscribers: Result<Vec<(String, String)>, String>,
}

/// `cluster show logs`, in the reference's format (momentum-notes §4.3):
/// the log's name, then tab-indented its size and a line per subscriber.
pub fn show_logs(logs: &[LogBlock], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            for log in logs {
                out.push_str(&format!("{}\n\t[on disk: {} bytes]\n", log.name, log.bytes));
                match &log.subscribers {
                    Ok(subs) => {
                        for (name, at) in subs {
                            out.push_str(&format!("\t[subscriber: '{name}' @ {at}]\n"));
                        }
                    }
                    Err(e) => out.push_str(&format!("\t[unreadable: {e}]\n")),
                }
            }
        }
        Mode::Xml => {
            out.push_str("<logs>\n");
            for log in logs {
                out.push_str(&format!(
                    "  <log name=\"{}\" bytes=\"{}\">\n",
                    xml_escape(&log.name),
                    log.bytes
                ));
                match &log.subscribers {
                    Ok(subs) => {
                        for (name, at) in subs {
                            out.push_str(&format!(
                                "    <subscriber name=\"{}\" checkpoint=\"{at}\"/>\n",
                                xml_escape(name)
                            ));
                        }
                    }
                    Err(e) => out.push_str(&format!("    <error>{}</error>\n", xml_escape(e))),
                }
                out.push_str("  </log>\n");
            }
            out.push_str("</logs>\n");
        }
    }
    out
}

/// `cluster show aggregator` (ours: the reference shows the aggregator's
/// state nowhere): the `logfile` template, then a block per node and log in
/// the style of `cluster show logs`.
pub fn show_aggregator(
    logfile: &str,
    streams: &[crate::core::logs::StreamStatus],
    mode: Mode,
) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            out.push_str(&format!("logfile: {logfile}\n"));
            for s in streams {
                out.push_str(&format!("{} {}\n", s.node, s.log));
                if let Some((subscriber, at)) = &s.checkpoint {
                    out.push_str(&format!("\t[subscriber: '{subscriber}' @ {at}]\n"));
                }
                out.push_str(&format!(
                    "\t[written: {} lines, {} bytes]\n",
                    s.lines, s.bytes
                ));
                match s.job {
                    Some(job) => out.push_str(&format!("\t[job {job}: {}]\n", s.state)),
                    None => out.push_str(&format!("\t[{}]\n", s.state)),
                }
                if let Some(file) = &s.last_file {
                    out.push_str(&format!("\t[file: {file}]\n"));
                }
                if let Some(e) = &s.last_error {
                    out.push_str(&format!("\t[error: {e}]\n"));
                }
            }
        }
        Mode::Xml => {
            out.push_str(&format!(
                "<aggregator logfile=\"{}\">\n",
                xml_escape(logfile)
            ));
            for s in streams {
                let (subscriber, at) = s
                    .checkpoint
                    .as_ref()
                    .map(|(n, id)| (n.as_str(), id.to_string()))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  <stream node=\"{}\" log=\"{}\" subscriber=\"{}\" checkpoint=\"{at}\" lines=\"{}\" bytes=\"{}\" job=\"{}\" state=\"{}\" file=\"{}\" error=\"{}\"/>\n",
                    xml_escape(&s.node),
                    xml_escape(&s.log),
                    xml_escape(subscriber),
                    s.lines,
                    s.bytes,
                    s.job.map(|j| j.to_string()).unwrap_or_default(),
                    xml_escape(&s.state),
                    xml_escape(s.last_file.as_deref().unwrap_or("")),
                    xml_escape(s.last_error.as_deref().unwrap_or("")),
                ));
            }
            out.push_str("</aggregator>\n");
        }
    }
    out
}

/// `cluster jobs` (ours: the reference has `cluster abort ID` but no
/// documented listing): the running log pulls.
pub fn jobs(jobs: &[crate::core::logs::JobStatus], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            if jobs.is_empty() {
                return "No jobs running.\n".to_string();
            }
            out.push_str(&format!(
                "{:<8} {:<16} {:<12} {:>8} {:>10}\n",
                "ID", "NODE", "LOG", "SECONDS", "LINES"
            ));
            for j in jobs {
                out.push_str(&format!(
                    "{:<8} {:<16} {:<12} {:>8} {:>10}\n",
                    j.id,
                    j.node,
                    j.log,
                    j.running_for.as_secs(),
                    j.lines
                ));
            }
        }
        Mode::Xml => {
            out.push_str("<jobs>\n");
            for j in jobs {
                out.push_str(&format!(
                    "  <job id=\"{}\" node=\"{}\" log=\"{}\" seconds=\"{}\" lines=\"{}\"/>\n",
                    j.id,
                    xml_escape(&j.node),
                    xml_escape(&j.log),
                    j.running_for.as_secs(),
                    j.lines
                ));
            }
            out.push_str("</jobs>\n");
        }
    }
    out
}

/// One line of `cluster arp show`: a peer's address, the MAC the kernel
/// has for it (`None`: unresolved) and the entry's age in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpLine {
    pub ip: std::net::IpAddr,
    pub mac: Option<String>,
    pub age_s: Option<u64>,
}

/// `cluster arp show`, in the reference's format (momentum-notes §1.6):
/// `10.80.116.204    [00:e0:81:63:5c:e8]  43s`.
pub fn arp_show(lines: &[ArpLine], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            for l in lines {
                let ip = l.ip.to_string();
                match (&l.mac, l.age_s) {
                    (Some(mac), Some(age)) => out.push_str(&format!("{ip:<16} [{mac}]  {age}s\n")),
                    (Some(mac), None) => out.push_str(&format!("{ip:<16} [{mac}]\n")),
                    (None, _) => out.push_str(&format!("{ip:<16} [unresolved]\n")),
                }
            }
        }
        Mode::Xml => {
            out.push_str("<arp>\n");
            for l in lines {
                out.push_str(&format!(
                    "  <host address=\"{}\" mac=\"{}\" age=\"{}\"/>\n",
                    l.ip,
                    l.mac.as_deref().unwrap_or(""),
                    l.age_s.map(|a| a.to_string()).unwrap_or_default()
                ));
            }
            out.push_str("</arp>\n");
        }
    }
    out
}

/// `cluster show log_group` (ours: the reference left listening to
/// `spuser`): the group, as `cluster info` names it, then the paniclog
/// lines peers broadcast on it, oldest first, each with its time (UTC, by
/// the sender's clock), sender and log.
/// ```text
/// Logger Group: panics
/// 2023-11-14T22:13:20Z n1 paniclog: 1700000000@n1: assertion failed
/// ```
pub fn log_group(
    group: Option<&str>,
    lines: &[crate::core::logs::group::GroupLine],
    mode: Mode,
) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            out.push_str(&format!(
                "Logger Group: {}
",
                group.unwrap_or("none")
            ));
            for l in lines {
                out.push_str(&format!(
                    "{} {} {}: {}
",
                    utc_stamp(l.time),
                    l.sender,
                    l.log,
                    printable(&l.line)
                ));
            }
        }
        Mode::Xml => {
            match group {
                Some(g) => out.push_str(&format!("<log_group name=\"{}\">\n", xml_escape(g))),
                None => out.push_str("<log_group>\n"),
            }
            for l in lines {
                out.push_str(&format!(
                    "  <line time=\"{}\" node=\"{}\" log=\"{}\">{}</line>\n",
                    utc_stamp(l.time),
                    xml_escape(&l.sender),
                    xml_escape(&l.log),
                    xml_escape(&printable(&l.line))
                ));
            }
            out.push_str("</log_group>\n");
        }
    }
    out
}

/// `cluster show mmove` (ours; the reference counted moves only as the
/// `#mmove` binding's queue): per peer, the moves sent to it and received
/// from it (see `core::mmove::counts` for what adds up); `\t` marks a TAB:
/// ```text
/// n2
/// \t[out: sent 300, accepted 298, duplicates 2, rejected 0, deferred 3, retries 5, failed 0, in flight 0]
/// \t[in: received 4, accepted 4, duplicates 0, rejected 0, deferred 0, in flight 0]
/// ```
pub fn mmove(peers: &[(String, crate::core::mmove::counts::PeerCounts)], mode: Mode) -> String {
    let mut out = String::new();
    match mode {
        Mode::Text => {
            if peers.is_empty() {
                return "No message moves.\n".to_string();
            }
            for (name, c) in peers {
                let (o, i) = (&c.outgoing, &c.incoming);
                out.push_str(&format!(
                    "{name}\n\t[out: sent {}, accepted {}, duplicates {}, rejected {}, deferred {}, retries {}, failed {}, in flight {}]\n\t[in: received {}, accepted {}, duplicates {}, rejected {}, deferred {}, in flight {}]\n",
                    o.sent, o.accepted, o.duplicates, o.rejected, o.deferred, o.retries, o.failed, o.in_flight,
                    i.received, i.accepted, i.duplicates, i.rejected, i.deferred, i.in_flight,
                ));
            }
        }
        Mode::Xml => {
            out.push_str("<mmove>\n");
            for (name, c) in peers {
                let (o, i) = (&c.outgoing, &c.incoming);
                out.push_str(&format!(
                    "  <peer name=\"{}\">\n    <out sent=\"{}\" accepted=\"{}\" duplicates=\"{}\" rejected=\"{}\" deferred=\"{}\" retries=\"{}\" failed=\"{}\" in_flight=\"{}\"/>\n    <in received=\"{}\" accepted=\"{}\" duplicates=\"{}\" rejected=\"{}\" deferred=\"{}\" in_flight=\"{}\"/>\n  </peer>\n",
                    xml_escape(name),
                    o.sent, o.accepted, o.duplicates, o.rejected, o.deferred, o.retries, o.failed, o.in_flight,
                    i.received, i.accepted, i.duplicates, i.rejected, i.deferred, i.in_flight,
                ));
            }
            out.push_str("</mmove>\n");
        }
    }
    out
}

/// `2023-11-14T22:13:20Z`; a time before the epoch shows as the epoch.
fn utc_stamp(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let t = crate::core::logs::template::BrokenTime::utc(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A journal line as one console line: its line end dropped, invalid UTF-8
/// replaced, and control characters escaped, so that a line cannot forge
/// the lines after it (nor break the XML, which forbids most of them).
fn printable(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end_matches(['\n', '\r']).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The reference's state words: owned or unowned, safe or UNSAFE, and
/// conflict / BROKEN when they apply.
fn flag_words(f: &crate::core::duravip::Flags) -> Vec<&'static str> {
    let mut w = vec![
        if f.owned { "owned" } else { "unowned" },
        if f.unsafe_services { "UNSAFE" } else { "safe" },
    ];
    if f.conflict {
        w.push("conflict");
    }
    if f.broken {
        w.push("BROKEN");
    }
    w
}

#[cfg(test)]
mod duravip_tests {
    use super::*;
    use crate::core::duravip::{Flags, IpState, Service};

    #[test]
    fn duravip_show_matches_the_reference_layout() {
        let state = IpState {
            ip: "10.80.116.53".parse().unwrap(),
            names: vec!["flowgomail-hotmail-53".into()],
            services: vec![Service::Binding],
            flags: Flags {
                owned: true,
                ..Flags::default()
            },
            candidates: vec![
                ("labrat-1".into(), vec![Service::Binding]),
                ("labrat-2".into(), vec![Service::Binding]),
                ("labrat-4".into(), vec![Service::Binding]),
            ],
            owner: Some("labrat-2".into()),
            view_stable_ms: 5_420_400,
            config_stable_ms: 5_466_000,
            moving_to: None,
        };
        // momentum-notes.md §1.6, verbatim but for the order of the node lines.
        let expected = "DuraVIP State:\n\
            10.80.116.53/flowgomail-hotmail-53: (owned,safe) multivip\n\
            \t[view stable for 5420 seconds]\n\
            \t[configuration stable for 5466 seconds]\n    \tlabrat-1 multivip\n \
            *  \tlabrat-2 multivip\n    \tlabrat-4 multivip\n";
        assert_eq!(
            duravip_show(std::slice::from_ref(&state), Mode::Text),
            expected
        );
        let mut broken = state;
        broken.flags = Flags {
            owned: false,
            unsafe_services: true,
            conflict: true,
            broken: true,
        };
        broken.owner = None;
        let text = duravip_show(&[broken], Mode::Text);
        assert!(
            text.contains(": (unowned,UNSAFE,conflict,BROKEN) multivip"),
            "{text}"
        );
        assert!(!text.contains(" *  "));
    }

    #[test]
    fn mmove_lists_both_directions_per_peer() {
        use crate::core::mmove::counts::{Incoming, Outgoing, PeerCounts};
        assert_eq!(mmove(&[], Mode::Text), "No message moves.\n");
        assert_eq!(mmove(&[], Mode::Xml), "<mmove>\n</mmove>\n");
        let counts = PeerCounts {
            outgoing: Outgoing {
                sent: 300,
                accepted: 298,
                duplicates: 2,
                deferred: 3,
                retries: 5,
                ..Outgoing::default()
            },
            incoming: Incoming {
                received: 4,
                accepted: 4,
                ..Incoming::default()
            },
        };
        assert_eq!(
            mmove(&[("n2".into(), counts)], Mode::Text),
            "n2\n\t[out: sent 300, accepted 298, duplicates 2, rejected 0, deferred 3, retries 5, failed 0, in flight 0]\n\t[in: received 4, accepted 4, duplicates 0, rejected 0, deferred 0, in flight 0]\n"
        );
        let xml = mmove(&[("n<2".into(), counts)], Mode::Xml);
        assert!(xml.contains("<peer name=\"n&lt;2\">"), "{xml}");
        assert!(
            xml.contains("<out sent=\"300\" accepted=\"298\" duplicates=\"2\" rejected=\"0\" deferred=\"3\" retries=\"5\" failed=\"0\" in_flight=\"0\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<in received=\"4\" accepted=\"4\" duplicates=\"0\" rejected=\"0\" deferred=\"0\" in_flight=\"0\"/>"),
            "{xml}"
        );
    }

    #[test]
    fn arp_show_matches_the_reference_sample() {
        let lines = [
            ArpLine {
                ip: "10.80.116.204".parse().unwrap(),
                mac: Some("00:e0:81:63:5c:e8".into()),
                age_s: Some(43),
            },
            ArpLine {
                ip: "10.80.116.205".parse().unwrap(),
                mac: None,
                age_s: None,
            },
        ];
        assert_eq!(
            arp_show(&lines, Mode::Text),
            "10.80.116.204    [00:e0:81:63:5c:e8]  43s\n10.80.116.205    [unresolved]\n"
        );
        let xml = arp_show(&lines, Mode::Xml);
        assert!(
            xml.contains("<host address=\"10.80.116.204\" mac=\"00:e0:81:63:5c:e8\" age=\"43\"/>"),
            "{xml}"
        );
    }

    #[test]
    fn show_logs_matches_the_reference_sample() {
        let logs = [
            LogBlock {
                name: "mainlog".into(),
                bytes: 1_604_005,
                subscribers: Ok(vec![("master".into(), "00000000:0000a43a".into())]),
            },
            LogBlock {
                name: "bouncealllog".into(),
                bytes: 0,
                subscribers: Ok(Vec::new()),
            },
        ];
        assert_eq!(
            show_logs(&logs, Mode::Text),
            "mainlog\n\t[on disk: 1604005 bytes]\n\t[subscriber: 'master' @ 00000000:0000a43a]\n\
             bouncealllog\n\t[on disk: 0 bytes]\n"
        );
        let xml = show_logs(&logs, Mode::Xml);
        assert!(
            xml.contains("<subscriber name=\"master\" checkpoint=\"00000000:0000a43a\"/>"),
            "{xml}"
        );
    }

    #[test]
    fn shared_list_and_gauge_rows_match_the_reference_samples() {
        assert_eq!(
            shared_list(&[("outbound_domains".into(), "gauge table")], Mode::Text),
            "Currently managed objects:\n              outbound_domains [lazy, gauge table w/ snapshots]\n"
        );
        assert_eq!(
            shared_show(
                "outbound_domain",
                "gauge table",
                "global",
                &[("aol.com".into(), "10".into())],
                Mode::Text
            ),
            "lazy, snapped gauge table 'outbound_domain', view 'global'\n                                                     aol.com:           10\n"
        );
        let xml = shared_show(
            "o",
            "gauge table",
            "#ec1-00001#n2",
            &[("a<b".into(), "-1".into())],
            Mode::Xml,
        );
        assert!(xml.contains("<row key=\"a&lt;b\" value=\"-1\"/>"), "{xml}");
        assert_eq!(
            shared_show(
                "inbound_cidr",
                "cidrtree",
                "global",
                &[
                    ("10.0.0.0/8".into(), "31".into()),
                    ("10.0.0.103/32".into(), "4".into())
                ],
                Mode::Text
            ),
            "lazy, snapped cidrtree 'inbound_cidr', view 'global'\n     31                         10.0.0.0/8\n      4                         10.0.0.103/32\n"
        );
    }
}
