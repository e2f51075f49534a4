//! Container networking through rtnetlink: a network namespace, the bridge
//! containers hang off, and the veth pair that joins a namespace to it.
//!
//! Messages are built and parsed by `netlink-packet-route` and travel on a
//! blocking NETLINK_ROUTE socket, one request at a time, each acknowledged
//! (or refused with an errno and, where the kernel gives one, its reason).
//! A netlink socket acts in the network namespace it was created in, so work
//! inside another namespace goes through a socket that a short-lived thread
//! made after entering it: no thread of the caller ever changes namespace.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

/// The loopback device is this index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;
/// Interface names are at most this long (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// The netlink extended-ack attribute holding the kernel's message.
const NLMSGERR_ATTR_MSG: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A name, address or value given by the caller is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A name is taken already.
    #[error("{0}")]
    Exists(String),
    /// A step failed; `what` names the step and its object, `reason` is the
    /// kernel's own explanation when it gave one.
    #[error("{what}: {errno}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Sys { what: String, errno: Errno, reason: Option<String> },
}

pub type Result<T> = std::result::Result<T, NetError>;

/// A refusal from the kernel: the errno and the extended-ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub errno: Errno,
    pub reason: Option<String>,
}

impl From<Errno> for Refused {
    fn from(errno: Errno) -> Self {
        Refused { errno, reason: None }
    }
}

impl Refused {
    fn during(self, what: impl Into<String>) -> NetError {
        NetError::Sys { what: what.into(), errno: self.errno, reason: self.reason }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

// ---- what callers give: names, addresses, MTUs ----------------------------

/// An interface name the kernel accepts (dev_valid_name): 1 to 15 bytes, not
/// "." or "..", without '/', ':' or whitespace.
pub fn check_ifname(name: &str) -> Result<()> {
    let bad = |why: &str| Err(NetError::Invalid(format!("invalid interface name {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_IFNAME {
        return bad(&format!("longer than {MAX_IFNAME} bytes"));
    }
    if name == "." || name == ".." {
        return bad("not a name");
    }
    if name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace()) {
        return bad("contains '/', ':', a NUL or whitespace");
    }
    Ok(())
}

/// An interface address, "10.88.0.2/16" or "fd00::2/64"; without a prefix
/// length it stands alone (/32, /128).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8)> {
    let bad = || NetError::Invalid(format!("invalid address {s:?}: expected ADDRESS/PREFIX, e.g. 10.88.0.2/16"));
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse::<u8>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

pub fn parse_gateway(s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| NetError::Invalid(format!("invalid gateway {s:?}: expected an IP address")))
}

/// 0 leaves the kernel's default (1500 for a bridge or veth).
pub fn check_mtu(mtu: u32) -> Result<()> {
    if mtu != 0 && !(68..=65535).contains(&mtu) {
        return Err(NetError::Invalid(format!("invalid MTU {mtu}: expected 68 to 65535")));
    }
    Ok(())
}

pub fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// A random locally administered unicast MAC address.
fn random_mac() -> Result<[u8; 6]> {
    let mut b = [0u8; 6];
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(NetError::Sys { what: "getrandom".into(), errno: Errno::last(), reason: None });
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    Ok(b)
}

// ---- messages ---------------------------------------------------------------

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn up_flags(m: &mut LinkMessage) {
    m.header.flags |= LinkFlags::Up;
    m.header.change_mask |= LinkFlags::Up;
}

/// A link looked up by name, without its statistics.
pub fn get_link_msg(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    m
}

/// A new bridge `name`, up. Its MAC address is set, not left to the kernel:
/// a bridge whose address was never set takes the lowest of its ports', so
/// it would change as containers come and go and stale every neighbour's
/// ARP entry for the gateway.
pub fn bridge_msg(name: &str, mtu: u32, mac: [u8; 6]) -> LinkMessage {
    let mut m = LinkMessage::default();
    up_flags(&mut m);
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    if mtu > 0 {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
    m
}

/// A veth pair made in one request: `host_if` here, enslaved to `master`
/// and up; its peer `peer` (with address `peer_mac`) made straight in the
/// network namespace `netns_fd`. The kernel makes all of it or, when a part
/// fails (a name taken, the master gone), none of it. The peer cannot be set
/// up in the same request (it is configured before the pair is linked, and a
/// veth without its peer refuses to open: ENOTCONN).
pub fn veth_msg(host_if: &str, master: u32, peer: &str, peer_mac: [u8; 6], netns_fd: RawFd, mtu: u32) -> LinkMessage {
    let mut p = LinkMessage::default();
    p.attributes.push(LinkAttribute::IfName(peer.into()));
    p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
    p.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    let mut m = LinkMessage::default();
    up_flags(&mut m);
    m.attributes.push(LinkAttribute::IfName(host_if.into()));
    if mtu > 0 {
        p.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    m.attributes.push(LinkAttribute::Controller(master));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    m
}

/// Hairpin mode on bridge port `index`: the bridge may send a frame back out
/// of the port it came in by, so a container reaches its own published port
/// through the host's address (DNAT turns it back towards the container).
pub fn hairpin_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(true)])),
    ]));
    m
}

/// Set link `index` up.
pub fn up_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    up_flags(&mut m);
    m
}

/// Delete a link by name.
pub fn del_link_msg(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

/// `ip`/`prefix` on link `index`. IPv6 addresses skip duplicate address
/// detection: they are ours to hand out, and usable at once.
pub fn addr_msg(index: u32, ip: IpAddr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(&ip);
    m.header.prefix_len = prefix;
    m.header.scope = AddressScope::Universe;
    m.header.index = index;
    if ip.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(ip));
    } else {
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    m.attributes.push(AddressAttribute::Address(ip));
    m
}

/// The default route via `gateway` out of link `index`, in the main table.
pub fn default_route_msg(gateway: IpAddr, index: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(&gateway);
    m.header.destination_prefix_length = 0;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    m.attributes.push(RouteAttribute::Oif(index));
    m
}

/// The request as bytes on the wire.
pub fn serialize(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut out = vec![0; nl.header.length as usize];
    nl.serialize(&mut out);
    out
}

/// The kernel's extended-ack message in an error's payload (the request's
/// header, capped, then attributes).
fn ack_reason(nl_flags: u16, payload: &[u8]) -> Option<String> {
    const HDR: usize = 16;
    if nl_flags & NLM_F_ACK_TLVS == 0 || payload.len() < HDR {
        return None;
    }
    NlasIterator::new(&payload[HDR..]).flatten().find(|n| n.kind() == NLMSGERR_ATTR_MSG).map(|n| {
        let v = n.value();
        String::from_utf8_lossy(&v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())]).into_owned()
    })
}

// ---- the socket -------------------------------------------------------------

/// A NETLINK_ROUTE socket of one network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> std::result::Result<Self, Errno> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_errno)?;
        sock.bind_auto().map_err(io_errno)?;
        // errors carry the request's header only, and the kernel's reason
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        Ok(Rtnl { sock, seq: 0, buf: Vec::with_capacity(65536) })
    }

    /// A socket in the network namespace `netns` (a descriptor of it), made
    /// by a thread that enters the namespace and ends.
    pub fn in_netns(netns: BorrowedFd<'_>) -> std::result::Result<Self, Errno> {
        let fd = netns.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
                    return Err(Errno::last());
                }
                Rtnl::new()
            })
            .join()
            .unwrap_or(Err(Errno::EIO))
        })
    }

    /// Send one request and read until its acknowledgement; the replies
    /// that came before it.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<Vec<RouteNetlinkMessage>, Refused> {
        self.seq = self.seq.wrapping_add(1);
        let out = serialize(msg, flags, self.seq);
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.sock.send_to(&out, &kernel, 0) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(io_errno(e).into()),
                Ok(_) => break,
            }
        }
        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            let n = match self.sock.recv(&mut self.buf, 0) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(io_errno(e).into()),
                Ok(n) => n.min(self.buf.len()),
            };
            let mut off = 0;
            while off + 16 <= n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n]).map_err(|_| Errno::EBADMSG)?;
                let len = m.header.length as usize;
                if len < 16 {
                    return Err(Errno::EBADMSG.into());
                }
                off += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                let nl_flags = m.header.flags;
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(c) => Err(Refused { errno: Errno::from_raw(-c.get()), reason: ack_reason(nl_flags, &e.header) }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(i) => replies.push(i),
                    _ => {}
                }
            }
        }
    }

    /// The link `name`, or None.
    pub fn get_link(&mut self, name: &str) -> std::result::Result<Option<LinkMessage>, Refused> {
        match self.request(RouteNetlinkMessage::GetLink(get_link_msg(name)), 0) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(Refused { errno: Errno::ENODEV, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Delete the link `name`; false if there is none.
    pub fn delete_link(&mut self, name: &str) -> std::result::Result<bool, Refused> {
        match self.request(RouteNetlinkMessage::DelLink(del_link_msg(name)), 0) {
            Ok(_) => Ok(true),
            Err(Refused { errno: Errno::ENODEV, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Add an address; one already there is fine.
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> std::result::Result<(), Refused> {
        match self.request(RouteNetlinkMessage::NewAddress(addr_msg(index, ip, prefix)), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) | Err(Refused { errno: Errno::EEXIST, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn set_up(&mut self, index: u32) -> std::result::Result<(), Refused> {
        self.request(RouteNetlinkMessage::SetLink(up_msg(index)), 0).map(|_| ())
    }
}

fn is_bridge(l: &LinkMessage) -> bool {
    l.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkInfo(i) if i.contains(&LinkInfo::Kind(InfoKind::Bridge))))
}

fn check_netns(fd: BorrowedFd<'_>) -> Result<()> {
    let owned = fd.try_clone_to_owned().map_err(|e| NetError::Invalid(format!("descriptor {}: {}", fd.as_raw_fd(), io_errno(e))))?;
    crate::namespaces::check_type(&owned, libc::CLONE_NEWNET, &format!("descriptor {}", fd.as_raw_fd())).map_err(NetError::Invalid)
}

fn parse_all(addrs: &[String]) -> Result<Vec<(IpAddr, u8)>> {
    addrs.iter().map(|a| parse_cidr(a)).collect()
}

// ---- what pinnace does with them ------------------------------------------

/// A new network namespace with its loopback interface up, as a descriptor
/// (close-on-exec) the caller owns. A thread made for it unshares, sets
/// lo up, opens its namespace and ends, so no thread of ours changes
/// namespace; the namespace lives as long as the descriptor (or anything
/// else in it).
pub fn new_namespace() -> Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<OwnedFd> {
            let fail = |what: &str, e: Refused| e.during(what);
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
                return Err(fail("unshare a network namespace", Errno::last().into()));
            }
            let mut nl = Rtnl::new().map_err(|e| fail("open a netlink socket in the new network namespace", e.into()))?;
            nl.set_up(LOOPBACK_IFINDEX).map_err(|e| fail("bring up lo in the new network namespace", e))?;
            let fd = unsafe { libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(fail("open /proc/thread-self/ns/net", Errno::last().into()));
            }
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .join()
        .unwrap_or_else(|_| Err(NetError::Invalid("the network namespace thread panicked".into())))
    })
}

/// Make the bridge `name` unless it exists (then it must be a bridge), put
/// each address on it (one already there is fine) and set it up. True if
/// this call made it. Two callers racing to make it both succeed.
pub fn bridge(name: &str, addrs: &[String], mtu: u32) -> Result<bool> {
    check_ifname(name)?;
    let addrs = parse_all(addrs)?;
    check_mtu(mtu)?;
    let mut nl = Rtnl::new().map_err(|e| Refused::from(e).during("open a netlink socket"))?;
    let created = match nl.request(RouteNetlinkMessage::NewLink(bridge_msg(name, mtu, random_mac()?)), NLM_F_CREATE | NLM_F_EXCL) {
        Ok(_) => true,
        Err(Refused { errno: Errno::EEXIST, .. }) => false,
        Err(e) => return Err(e.during(format!("create bridge {name}"))),
    };
    let link = nl
        .get_link(name)
        .map_err(|e| e.during(format!("look up bridge {name}")))?
        .ok_or_else(|| Refused::from(Errno::ENODEV).during(format!("bridge {name} vanished")))?;
    if !is_bridge(&link) {
        return Err(NetError::Exists(format!("link {name} exists and is not a bridge")));
    }
    let index = link.header.index;
    for (ip, prefix) in addrs {
        nl.add_address(index, ip, prefix).map_err(|e| e.during(format!("add address {ip}/{prefix} to {name}")))?;
    }
    if !link.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index).map_err(|e| e.during(format!("bring up {name}")))?;
    }
    Ok(created)
}

/// What [`attach`] needs.
#[derive(Debug, Clone)]
pub struct Attach<'a> {
    pub bridge: &'a str,
    /// The veth's end in the caller's namespace.
    pub host_if: &'a str,
    /// Its peer's name in the target namespace ("eth0").
    pub ifname: &'a str,
    pub addrs: &'a [String],
    pub gateway: Option<&'a str>,
    pub mtu: u32,
}

/// Join the network namespace `netns` to bridge `a.bridge` with a veth
/// pair: `a.host_if` on the bridge here, `a.ifname` in the namespace with
/// the addresses and (unless one exists) a default route via the gateway.
/// Returns the MAC address of `a.ifname`. On failure nothing is left: the
/// pair is deleted.
pub fn attach(netns: BorrowedFd<'_>, a: &Attach<'_>) -> Result<String> {
    for n in [a.bridge, a.host_if, a.ifname] {
        check_ifname(n)?;
    }
    let addrs = parse_all(a.addrs)?;
    let gateway = a.gateway.map(parse_gateway).transpose()?;
    check_mtu(a.mtu)?;
    check_netns(netns)?;
    let step = |what: String| format!("attach {} to bridge {}: {what}", a.ifname, a.bridge);
    let mut host = Rtnl::new().map_err(|e| Refused::from(e).during(step("open a netlink socket".into())))?;
    let br = match host.get_link(a.bridge).map_err(|e| e.during(step("look up the bridge".into())))? {
        Some(l) if is_bridge(&l) => l.header.index,
        Some(_) => return Err(NetError::Invalid(step(format!("{} is not a bridge", a.bridge)))),
        None => return Err(Refused::from(Errno::ENODEV).during(step(format!("bridge {}", a.bridge)))),
    };
    let mut ns = Rtnl::in_netns(netns).map_err(|e| Refused::from(e).during(step("enter the network namespace".into())))?;
    let mac = random_mac()?;
    let veth = veth_msg(a.host_if, br, a.ifname, mac, netns.as_raw_fd(), a.mtu);
    if let Err(e) = host.request(RouteNetlinkMessage::NewLink(veth), NLM_F_CREATE | NLM_F_EXCL) {
        if e.errno == Errno::EEXIST {
            // which of the two names is taken
            let here = host.get_link(a.host_if).ok().flatten().is_some();
            let which = if here {
                format!("link {} exists already", a.host_if)
            } else {
                format!("{} exists already in the target network namespace", a.ifname)
            };
            return Err(NetError::Exists(step(format!("create veth {}: {which}", a.host_if))));
        }
        return Err(e.during(step(format!("create veth {} / {}", a.host_if, a.ifname))));
    }
    let configured = (|| -> Result<()> {
        let hl = host
            .get_link(a.host_if)
            .map_err(|e| e.during(step(format!("look up {}", a.host_if))))?
            .ok_or_else(|| Refused::from(Errno::ENODEV).during(step(format!("look up {}", a.host_if))))?;
        // RTM_NEWLINK on an existing link: only that path applies port (slave) data
        host.request(RouteNetlinkMessage::NewLink(hairpin_msg(hl.header.index)), 0)
            .map_err(|e| e.during(step(format!("set hairpin mode on {}", a.host_if))))?;
        let peer = ns
            .get_link(a.ifname)
            .map_err(|e| e.during(step(format!("look up {}", a.ifname))))?
            .ok_or_else(|| Refused::from(Errno::ENODEV).during(step(format!("look up {}", a.ifname))))?;
        let index = peer.header.index;
        for (ip, prefix) in &addrs {
            ns.add_address(index, *ip, *prefix).map_err(|e| e.during(step(format!("add address {ip}/{prefix}"))))?;
        }
        ns.set_up(index).map_err(|e| e.during(step(format!("bring up {}", a.ifname))))?;
        if let Some(gw) = gateway {
            match ns.request(RouteNetlinkMessage::NewRoute(default_route_msg(gw, index)), NLM_F_CREATE | NLM_F_EXCL) {
                // a default route is there already: keep it
                Ok(_) | Err(Refused { errno: Errno::EEXIST, .. }) => {}
                Err(e) => return Err(e.during(step(format!("add default route via {gw}")))),
            }
        }
        Ok(())
    })();
    if let Err(e) = configured {
        // the peer goes with it
        let _ = host.delete_link(a.host_if);
        return Err(e);
    }
    Ok(format_mac(&mac))
}

/// Delete `ifname` in the network namespace `netns` (a veth's peer goes
/// with it); false if there is no such link.
pub fn detach(netns: BorrowedFd<'_>, ifname: &str) -> Result<bool> {
    check_ifname(ifname)?;
    check_netns(netns)?;
    let mut ns = Rtnl::in_netns(netns).map_err(|e| Refused::from(e).during(format!("detach {ifname}: enter the network namespace")))?;
    ns.delete_link(ifname).map_err(|e| e.during(format!("delete {ifname}")))
}

/// Delete the link `name` in the caller's namespace; false if absent.
pub fn link_delete(name: &str) -> Result<bool> {
    check_ifname(name)?;
    let mut nl = Rtnl::new().map_err(|e| Refused::from(e).during("open a netlink socket"))?;
    nl.delete_link(name).map_err(|e| e.during(format!("delete link {name}")))
}

pub fn link_exists(name: &str) -> Result<bool> {
    check_ifname(name)?;
    let mut nl = Rtnl::new().map_err(|e| Refused::from(e).during("open a netlink socket"))?;
    Ok(nl.get_link(name).map_err(|e| e.during(format!("look up link {name}")))?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkBuffer, NLM_F_REQUEST};

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        for ok in ["eth0", "pinnace0", "veth0123456789a", "a"] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_ifname("veth0123456789ab").unwrap_err().to_string(),
            "invalid interface name \"veth0123456789ab\": longer than 15 bytes"
        );
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "a\tb", "a\0"] {
            assert!(matches!(check_ifname(bad), Err(NetError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn addresses_take_a_prefix_or_stand_alone() {
        assert_eq!(parse_cidr("10.88.0.1/16").unwrap(), ("10.88.0.1".parse().unwrap(), 16));
        assert_eq!(parse_cidr("10.88.0.2").unwrap(), ("10.88.0.2".parse().unwrap(), 32));
        assert_eq!(parse_cidr("fd00::2/64").unwrap(), ("fd00::2".parse().unwrap(), 64));
        assert_eq!(parse_cidr("fd00::2").unwrap().1, 128);
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().1, 0);
        for bad in ["10.88.0.1/33", "fd00::1/129", "10.88.0/16", "10.88.0.1/", "10.88.0.1/+8", "x/8", "", "10.88.0.1/16/2", "10.0.0.1/256"] {
            let e = parse_cidr(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid address {bad:?}")), "{e}");
        }
        assert!(parse_gateway("10.88.0.1").is_ok());
        assert!(parse_gateway("10.88.0.1/16").is_err());
    }

    #[test]
    fn mtus_and_macs() {
        assert!(check_mtu(0).is_ok() && check_mtu(1500).is_ok() && check_mtu(9000).is_ok());
        assert!(check_mtu(67).is_err() && check_mtu(65536).is_err());
        assert_eq!(format_mac(&[0x02, 0, 0xab, 1, 2, 0xff]), "02:00:ab:01:02:ff");
        let m = random_mac().unwrap();
        // unicast, locally administered
        assert_eq!(m[0] & 0x03, 0x02);
    }

    fn roundtrip(bytes: &[u8]) -> NetlinkMessage<RouteNetlinkMessage> {
        let buf = NetlinkBuffer::new_checked(bytes).unwrap();
        assert_eq!(buf.length() as usize, bytes.len());
        NetlinkMessage::deserialize(bytes).unwrap()
    }

    #[test]
    fn requests_ask_for_an_ack_and_carry_the_sequence_number() {
        let b = serialize(RouteNetlinkMessage::GetLink(get_link_msg("eth0")), 0, 7);
        let m = roundtrip(&b);
        assert_eq!(m.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m.header.sequence_number, 7);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(l)) = m.payload else { panic!() };
        assert!(l.attributes.contains(&LinkAttribute::IfName("eth0".into())));
    }

    #[test]
    fn a_veth_is_made_enslaved_and_up_with_its_peer_in_the_namespace() {
        let mac = [2, 1, 2, 3, 4, 5];
        let b = serialize(RouteNetlinkMessage::NewLink(veth_msg("vethabc", 9, "eth0", mac, 42, 1400)), NLM_F_CREATE | NLM_F_EXCL, 1);
        let m = roundtrip(&b);
        assert_eq!(m.header.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = m.payload else { panic!() };
        assert!(l.header.flags.contains(LinkFlags::Up) && l.header.change_mask.contains(LinkFlags::Up));
        assert!(l.attributes.contains(&LinkAttribute::IfName("vethabc".into())));
        assert!(l.attributes.contains(&LinkAttribute::Controller(9)));
        assert!(l.attributes.contains(&LinkAttribute::Mtu(1400)));
        let info = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(i) => Some(i.clone()),
            _ => None,
        });
        let info = info.unwrap();
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = &info[1] else { panic!("{info:?}") };
        assert!(p.header.flags.is_empty());
        for a in [LinkAttribute::IfName("eth0".into()), LinkAttribute::NetNsFd(42), LinkAttribute::Address(mac.to_vec()), LinkAttribute::Mtu(1400)] {
            assert!(p.attributes.contains(&a), "{a:?} in {p:?}");
        }
    }

    #[test]
    fn a_bridge_gets_a_fixed_mac_and_no_mtu_unless_asked() {
        let l = bridge_msg("pinnace0", 0, [2, 0, 0, 0, 0, 1]);
        assert!(l.attributes.contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])));
        assert!(!l.attributes.iter().any(|a| matches!(a, LinkAttribute::Mtu(_))));
        assert!(is_bridge(&l));
        assert!(bridge_msg("b", 9000, [2; 6]).attributes.contains(&LinkAttribute::Mtu(9000)));
    }

    #[test]
    fn addresses_and_routes_by_family() {
        let m = addr_msg(3, "10.88.0.2".parse().unwrap(), 16);
        assert_eq!((m.header.family, m.header.prefix_len, m.header.index), (AddressFamily::Inet, 16, 3));
        assert!(m.attributes.contains(&AddressAttribute::Local("10.88.0.2".parse().unwrap())));
        let m = addr_msg(3, "fd00::2".parse().unwrap(), 64);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert!(m.header.flags.contains(AddressHeaderFlags::Nodad));
        let r = default_route_msg("10.88.0.1".parse().unwrap(), 3);
        assert_eq!((r.header.destination_prefix_length, r.header.table), (0, RouteHeader::RT_TABLE_MAIN));
        assert!(r.attributes.contains(&RouteAttribute::Gateway(RouteAddress::Inet("10.88.0.1".parse().unwrap()))));
        assert!(r.attributes.contains(&RouteAttribute::Oif(3)));
        let r = default_route_msg("fd00::1".parse().unwrap(), 3);
        assert_eq!(r.header.address_family, AddressFamily::Inet6);
        // and they serialize
        roundtrip(&serialize(RouteNetlinkMessage::NewRoute(r), NLM_F_CREATE | NLM_F_EXCL, 2));
    }

    #[test]
    fn the_kernels_reason_is_read_from_an_extended_ack() {
        // capped request header, then NLMSGERR_ATTR_MSG = "Nexthop has invalid gateway\0"
        let text = b"Nexthop has invalid gateway\0";
        let mut p = vec![0u8; 16];
        let len = 4 + text.len();
        p.extend_from_slice(&(len as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(text);
        while !p.len().is_multiple_of(4) {
            p.push(0);
        }
        assert_eq!(ack_reason(NLM_F_ACK_TLVS, &p).as_deref(), Some("Nexthop has invalid gateway"));
        assert_eq!(ack_reason(0, &p), None);
        let e = Refused { errno: Errno::ENETUNREACH, reason: Some("Nexthop has invalid gateway".into()) }.during("add default route via 192.0.2.1");
        assert_eq!(e.to_string(), "add default route via 192.0.2.1: ENETUNREACH: Network is unreachable (Nexthop has invalid gateway)");
    }

    #[test]
    fn a_descriptor_that_is_no_network_namespace_is_refused_before_anything_is_made() {
        let f = std::fs::File::open("/proc/self/ns/uts").unwrap();
        let a = Attach { bridge: "br0", host_if: "veth0", ifname: "eth0", addrs: &[], gateway: None, mtu: 0 };
        let e = attach(f.as_fd(), &a).unwrap_err().to_string();
        assert_eq!(e, format!("descriptor {} is a uts namespace, not a network namespace", f.as_raw_fd()));
        let a = Attach { addrs: &["10.0.0.300/8".into()], ..a };
        assert!(attach(f.as_fd(), &a).unwrap_err().to_string().starts_with("invalid address"));
    }

    use std::os::fd::AsFd;
}
