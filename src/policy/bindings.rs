//! The binding table: every sending binding this node knows, its group and
//! address, and whether a message can leave from it here, must move to the
//! node that owns its DuraVIP, or cannot go at all now.
//!
//! It starts from the configuration (`Binding` and `Binding_Group`
//! stanzas): a binding that is not a DuraVIP is this node's own; a DuraVIP
//! binding belongs to no one until the DuraVIP engine says who owns it.
//! The engine tells [`Bindings::set_ownership`] after every change (and
//! run-time DuraVIPs the host registered bring their binding names), which
//! publishes a new table; set_binding calls, on the MTA's threads, read
//! the current one without a lock ([`super::published`]) and keep it for
//! the call.
//!
//! Choosing from a group ([`BindingTable::choose_from_group`]) follows the
//! reference (`msg:binding_group`, Sieve's `ec_set_binding_group`): a
//! binding whose DuraVIP this node owns and has plumbed first, then the
//! node's own non-DuraVIP bindings, then a binding another node owns (the
//! message moves there); never one that no node holds or that is owned
//! here but not plumbed. Among equals the choice is random.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::published::Published;
use crate::config::Config;
use crate::core::hash::Seeded;
use crate::io::vip::Ownership;

/// Where a message can leave from a binding now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingState {
    /// Not a DuraVIP: this node's own address.
    Local,
    /// A DuraVIP this node owns and has plumbed.
    Owned,
    /// A DuraVIP another node owns, by name: the message moves there.
    Remote(String),
    /// A DuraVIP no node owns now.
    Unowned,
    /// A DuraVIP this node owns but could not plumb (or that went missing
    /// from its interface).
    Unplumbed,
}

/// One binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingInfo {
    pub name: String,
    pub group: Option<String>,
    pub address: Option<IpAddr>,
    pub state: BindingState,
}

impl BindingInfo {
    /// Why no message can leave from it now, if none can.
    pub fn unavailable(&self) -> Option<String> {
        let address = self.address.map(|a| format!(" {a}")).unwrap_or_default();
        match self.state {
            BindingState::Unowned => Some(format!(
                "binding '{}': no node holds its DuraVIP{address}",
                self.name
            )),
            BindingState::Unplumbed => Some(format!(
                "binding '{}': its DuraVIP{address} is owned here but not plumbed",
                self.name
            )),
            _ => None,
        }
    }

    /// The group choice's preference (module docs); `None`: never chosen.
    fn rank(&self) -> Option<u8> {
        match self.state {
            BindingState::Owned => Some(0),
            BindingState::Local => Some(1),
            BindingState::Remote(_) => Some(2),
            BindingState::Unowned | BindingState::Unplumbed => None,
        }
    }
}

/// A snapshot of every binding (module docs).
#[derive(Clone, Default)]
pub struct BindingTable {
    bindings: Vec<BindingInfo>,
    by_name: HashMap<String, usize, Seeded>,
    /// Each group's bindings (indices into `bindings`, in configuration
    /// order), sorted by group name: an MTA has a few groups, and a binary
    /// search of a few short names is quicker than hashing one.
    groups: Vec<(String, Vec<usize>)>,
    /// Each group's bindings of the best rank (module docs), in the order
    /// of `groups`: worked out when the table is made, since states change
    /// once per DuraVIP move and groups are chosen from once per message.
    best: Vec<Vec<usize>>,
}

impl fmt::Debug for BindingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl BindingTable {
    /// A table of these bindings (a later one replaces an earlier one of
    /// the same name).
    pub fn new(bindings: impl IntoIterator<Item = BindingInfo>) -> BindingTable {
        let mut table = BindingTable::default();
        for b in bindings {
            table.insert(b);
        }
        table.rank_groups();
        table
    }

    /// Fills `best` from the bindings' states.
    fn rank_groups(&mut self) {
        let bindings = &self.bindings;
        self.best = self
            .groups
            .iter()
            .map(|(_, members)| {
                let ranked = || {
                    members
                        .iter()
                        .filter_map(|&i| Some((bindings[i].rank()?, i)))
                };
                let best = ranked().map(|(rank, _)| rank).min();
                ranked()
                    .filter(|(rank, _)| Some(*rank) == best)
                    .map(|(_, i)| i)
                    .collect()
            })
            .collect();
    }

    /// The configuration's bindings, before any DuraVIP has an owner. A
    /// binding on the address of a DuraVIP is a DuraVIP too, as the
    /// reference has it.
    pub fn from_config(config: &Config) -> BindingTable {
        let claims = crate::core::duravip::claims_from_config(config);
        BindingTable::new(config.bindings.iter().map(|b| {
            let duravip = claims.iter().any(|c| c.names.contains(&b.name));
            BindingInfo {
                name: b.name.clone(),
                group: b.group.clone(),
                address: b.bind_address,
                state: if duravip {
                    BindingState::Unowned
                } else {
                    BindingState::Local
                },
            }
        }))
    }

    fn insert(&mut self, b: BindingInfo) {
        let index = match self.by_name.get(&b.name) {
            Some(&i) => {
                if let Some(group) = self.bindings[i].group.clone()
                    && let Some(members) = self.members_mut(&group)
                {
                    members.retain(|m| *m != i);
                }
                i
            }
            None => {
                self.bindings.push(b.clone());
                self.by_name.insert(b.name.clone(), self.bindings.len() - 1);
                self.bindings.len() - 1
            }
        };
        if let Some(group) = &b.group {
            match self.members_mut(group) {
                Some(members) => members.push(index),
                None => {
                    let at = self.groups.partition_point(|(g, _)| g < group);
                    self.groups.insert(at, (group.clone(), vec![index]));
                }
            }
        }
        self.bindings[index] = b;
    }

    /// This table with the DuraVIP owners of `ownership`: bindings it names
    /// take their state from their address's owner; DuraVIP bindings it
    /// does not name are owned by no one; names it brings that the
    /// configuration lacks (run-time DuraVIPs) are added, in no group.
    pub fn with_ownership(&self, ownership: &Ownership) -> BindingTable {
        let mut next = self.clone();
        for b in &mut next.bindings {
            if b.state != BindingState::Local {
                b.state = BindingState::Unowned;
            }
        }
        for a in &ownership.addresses {
            let state = match (&a.owner, a.owned_here, a.plumbed_here) {
                (_, true, true) => BindingState::Owned,
                (_, true, false) => BindingState::Unplumbed,
                (Some(owner), false, _) => BindingState::Remote(owner.clone()),
                (None, false, _) => BindingState::Unowned,
            };
            for name in &a.names {
                match next.by_name.get(name) {
                    Some(&i) => {
                        let b = &mut next.bindings[i];
                        b.state = state.clone();
                        b.address.get_or_insert(a.ip);
                    }
                    None => next.insert(BindingInfo {
                        name: name.clone(),
                        group: None,
                        address: Some(a.ip),
                        state: state.clone(),
                    }),
                }
            }
        }
        next.rank_groups();
        next
    }

    /// Where `group` is in `groups` (and `best`).
    fn group_at(&self, group: &str) -> Option<usize> {
        self.groups
            .binary_search_by(|(g, _)| g.as_str().cmp(group))
            .ok()
    }

    fn members_mut(&mut self, group: &str) -> Option<&mut Vec<usize>> {
        let at = self.group_at(group)?;
        Some(&mut self.groups[at].1)
    }

    pub fn get(&self, name: &str) -> Option<&BindingInfo> {
        self.by_name.get(name).map(|&i| &self.bindings[i])
    }

    /// A binding by its place in the table (see [`Choice`]).
    pub fn at(&self, index: usize) -> Option<&BindingInfo> {
        self.bindings.get(index)
    }

    /// Where `name` is in the table, for [`BindingTable::at`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Every binding, by name.
    pub fn iter(&self) -> impl Iterator<Item = &BindingInfo> {
        let mut all: Vec<&BindingInfo> = self.bindings.iter().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
    }

    /// A binding of `group` to send from (module docs), with its place in
    /// the table, or why there is none.
    pub fn choose_from_group(&self, group: &str) -> Choice<'_> {
        let Some(at) = self.group_at(group) else {
            return Choice::UnknownGroup;
        };
        let best = &self.best[at];
        let chosen = (!best.is_empty()).then(|| best[random_below(best.len())]);
        match chosen {
            Some(i) => Choice::Chosen(i, &self.bindings[i]),
            None => {
                let why: Vec<String> = self.groups[at]
                    .1
                    .iter()
                    .filter_map(|&i| self.bindings[i].unavailable())
                    .collect();
                Choice::NoneAvailable(format!(
                    "binding group '{group}' has no binding to send from: {}",
                    why.join("; ")
                ))
            }
        }
    }
}

/// What [`BindingTable::choose_from_group`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'t> {
    /// The binding, and its place in the table ([`BindingTable::at`]).
    Chosen(usize, &'t BindingInfo),
    UnknownGroup,
    /// Why, binding by binding.
    NoneAvailable(String),
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()),
    );
}

/// A number in `0..n` (`n` > 0; 0 for 0): splitmix64 per thread, cheap
/// and unpredictable enough to spread messages over a group.
fn random_below(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    RNG.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n as u64) as usize
    })
}

/// The node's binding table as it changes (module docs).
#[derive(Debug)]
pub struct Bindings {
    /// From the configuration.
    base: BindingTable,
    current: Published<BindingTable>,
}

impl Bindings {
    pub fn from_config(config: &Config) -> Bindings {
        let base = BindingTable::from_config(config);
        Bindings {
            current: Published::new(base.clone()),
            base,
        }
    }

    /// The table now (this thread's copy: see [`Published`]).
    pub fn current(&self) -> Arc<BindingTable> {
        self.current.get()
    }

    /// The DuraVIP engine's latest word on who owns what.
    pub fn set_ownership(&self, ownership: &Ownership) {
        self.current.set(self.base.with_ownership(ownership));
    }

    /// Back to the configuration's table: the node stopped, and owns
    /// nothing any more, nor knows who does.
    pub fn reset(&self) {
        self.current.set(self.base.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::vip::AddressOwner;
    use std::collections::BTreeMap;

    fn binding(name: &str, group: &str, state: BindingState) -> BindingInfo {
        BindingInfo {
            name: name.into(),
            group: Some(group.into()),
            address: None,
            state,
        }
    }

    /// The binding chosen from `group`, or why there is none.
    fn chosen<'t>(table: &'t BindingTable, group: &str) -> Result<&'t BindingInfo, String> {
        match table.choose_from_group(group) {
            Choice::Chosen(_, b) => Ok(b),
            Choice::UnknownGroup => Err(format!("unknown binding group '{group}'")),
            Choice::NoneAvailable(why) => Err(why),
        }
    }

    /// How often each binding of `group` is chosen in 400 tries.
    fn choices(table: &BindingTable, group: &str) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..400 {
            let b = chosen(table, group).unwrap();
            *seen.entry(b.name.clone()).or_insert(0) += 1;
        }
        seen
    }

    #[test]
    fn a_group_prefers_owned_then_local_then_remote_and_skips_the_unavailable() {
        let table = BindingTable::new([
            binding("remote", "g", BindingState::Remote("n2".into())),
            binding("local", "g", BindingState::Local),
            binding("owned1", "g", BindingState::Owned),
            binding("owned2", "g", BindingState::Owned),
            binding("unplumbed", "g", BindingState::Unplumbed),
            binding("unowned", "g", BindingState::Unowned),
        ]);
        let seen = choices(&table, "g");
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["owned1", "owned2"]);
        assert!(
            seen.values().all(|n| *n > 100),
            "random among equals: {seen:?}"
        );

        let table = BindingTable::new([
            binding("remote", "g", BindingState::Remote("n2".into())),
            binding("local", "g", BindingState::Local),
            binding("unplumbed", "g", BindingState::Unplumbed),
        ]);
        assert_eq!(chosen(&table, "g").unwrap().name, "local");

        let table = BindingTable::new([
            binding("remote", "g", BindingState::Remote("n2".into())),
            binding("unowned", "g", BindingState::Unowned),
        ]);
        assert_eq!(
            chosen(&table, "g").unwrap().state,
            BindingState::Remote("n2".into())
        );
    }

    #[test]
    fn a_group_with_nothing_available_says_why_binding_by_binding() {
        let mut unplumbed = binding("b2", "g", BindingState::Unplumbed);
        unplumbed.address = Some("10.1.1.2".parse().unwrap());
        let table = BindingTable::new([binding("b1", "g", BindingState::Unowned), unplumbed]);
        assert_eq!(
            chosen(&table, "g").unwrap_err(),
            "binding group 'g' has no binding to send from: binding 'b1': no node holds its \
             DuraVIP; binding 'b2': its DuraVIP 10.1.1.2 is owned here but not plumbed"
        );
        assert_eq!(
            chosen(&table, "nope").unwrap_err(),
            "unknown binding group 'nope'"
        );
    }

    #[test]
    fn ownership_sets_each_binding_state_and_adds_run_time_names() {
        let text = "Binding_Group \"pool\" {\n\
                      Binding \"mine\" { Bind_Address = \"10.1.1.1\" Enable_Duravip = true }\n\
                      Binding \"theirs\" { Bind_Address = \"10.1.1.2\" Enable_Duravip = true }\n\
                      Binding \"broken\" { Bind_Address = \"10.1.1.3\" Enable_Duravip = true }\n\
                      Binding \"plain\" { Bind_Address = \"10.1.2.1\" }\n\
                    }\n";
        let config = crate::config::LoadedConfig::parse(text, crate::config::Format::Ecelerity)
            .unwrap()
            .config;
        let bindings = Bindings::from_config(&config);
        let state = |t: &BindingTable, n: &str| t.get(n).unwrap().state.clone();
        let before = bindings.current();
        assert_eq!(state(&before, "mine"), BindingState::Unowned);
        assert_eq!(state(&before, "plain"), BindingState::Local);
        let owner = |ip: &str, names: &[&str], owner: Option<&str>, here: bool, plumbed: bool| {
            AddressOwner {
                ip: ip.parse().unwrap(),
                names: names.iter().map(|n| n.to_string()).collect(),
                owner: owner.map(str::to_string),
                owned_here: here,
                plumbed_here: plumbed,
            }
        };
        bindings.set_ownership(&Ownership {
            addresses: vec![
                owner("10.1.1.1", &["mine"], Some("n1"), true, true),
                owner("10.1.1.2", &["theirs"], Some("n2"), false, false),
                owner("10.1.1.3", &["broken"], Some("n1"), true, false),
                owner("10.1.1.9", &["runtime"], Some("n2"), false, false),
            ],
        });
        let now = bindings.current();
        assert_eq!(state(&now, "mine"), BindingState::Owned);
        assert_eq!(state(&now, "theirs"), BindingState::Remote("n2".into()));
        assert_eq!(state(&now, "broken"), BindingState::Unplumbed);
        assert_eq!(state(&now, "plain"), BindingState::Local);
        let runtime = now.get("runtime").unwrap();
        assert_eq!(
            (runtime.group.as_deref(), runtime.address),
            (None, Some("10.1.1.9".parse().unwrap()))
        );
        assert_eq!(
            state(&before, "mine"),
            BindingState::Unowned,
            "a snapshot stays as it was"
        );
        bindings.reset();
        assert_eq!(state(&bindings.current(), "mine"), BindingState::Unowned);
        assert!(bindings.current().get("runtime").is_none());
    }
}
