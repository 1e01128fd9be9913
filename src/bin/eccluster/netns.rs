//! The network of `eccluster demo --netns`: one network namespace per node,
//! each with an `eth0` whose other end is a port of a bridge. The bridge
//! lives in a namespace of its own, so the demo changes nothing in the
//! host's namespace and deleting the namespaces removes everything it made.

use std::process::Command;

/// The interface every node has in its namespace.
pub const INTERFACE: &str = "eth0";

/// The namespaces of one demo run; deleted on drop, so an error, a panic or
/// an interrupt (which the demo turns into an error) still cleans up.
pub struct Lab {
    prefix: String,
    /// Every namespace created so far, in creation order.
    created: Vec<String>,
}

impl Lab {
    /// Builds a namespace per member, with `eth0` holding the member's
    /// address (`a.b.c.d/len`) and plugged into the bridge.
    pub fn new(members: &[(&str, &str)]) -> Result<Lab, String> {
        if !is_root() {
            return Err(
                "demo --netns needs root (it creates network namespaces, veth pairs \
                        and a bridge, and plumbs addresses); run it with sudo, or run \
                        `eccluster demo` without --netns for the dry run"
                    .into(),
            );
        }
        let mut lab = Lab {
            prefix: format!("eccdemo-{}", std::process::id()),
            created: Vec::new(),
        };
        let hub = lab.add_namespace("hub")?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (name, cidr) in members {
            let ns = lab.add_namespace(name)?;
            let port = format!("p-{name}");
            ip(&[
                "link", "add", INTERFACE, "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &ns, "addr", "add", cidr, "dev", INTERFACE])?;
            ip(&["-n", &ns, "link", "set", INTERFACE, "up"])?;
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, name: &str) -> Result<String, String> {
        let ns = self.namespace(name);
        ip(&["netns", "add", &ns])?;
        self.created.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace of a member.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Lets a member's kernel learn neighbours from gratuitous ARP: Linux
    /// only updates existing entries by default, and the demo's client has
    /// never talked to the addresses before.
    pub fn accept_gratuitous_arp(&self, name: &str) -> Result<(), String> {
        let ns = self.namespace(name);
        for key in ["all", INTERFACE] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{key}.arp_accept=1"),
                ],
            )?;
        }
        Ok(())
    }

    /// `ip -n NS -o -4 addr show dev eth0`, without the lifetimes.
    pub fn addresses(&self, name: &str) -> Result<Vec<String>, String> {
        let out = ip(&[
            "-n",
            &self.namespace(name),
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            INTERFACE,
        ])?;
        Ok(out
            .lines()
            .map(|l| l.split('\\').next().unwrap_or(l).trim_end().to_string())
            .collect())
    }

    /// The MAC address of a member's `eth0`.
    pub fn mac(&self, name: &str) -> Result<String, String> {
        let out = ip(&[
            "-n",
            &self.namespace(name),
            "-o",
            "link",
            "show",
            "dev",
            INTERFACE,
        ])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| format!("no MAC address on {name}'s {INTERFACE}: {out}"))
    }

    /// A member's neighbour table: (IP, MAC) of every entry with a MAC.
    pub fn neighbours(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let out = ip(&[
            "-n",
            &self.namespace(name),
            "-4",
            "neigh",
            "show",
            "dev",
            INTERFACE,
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let mac = words.iter().position(|w| *w == "lladdr")?;
                Some((words[0].to_string(), (*words.get(mac + 1)?).to_string()))
            })
            .collect())
    }

    /// Takes a member's bridge port down, as if its machine lost power: a
    /// killed process leaves its addresses plumbed, and a kernel that is
    /// still on the segment would go on answering ARP for them.
    pub fn unplug(&self, name: &str) -> Result<(), String> {
        ip(&[
            "-n",
            &self.namespace("hub"),
            "link",
            "set",
            &format!("p-{name}"),
            "down",
        ])
        .map(drop)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its interfaces, and a veth pair goes
        // with either end. Best effort: report, never panic in drop.
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("eccluster demo: cleaning up: {e}");
            }
        }
    }
}

/// Whether this process runs with effective uid 0, from /proc (no libc
/// call, so no unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
