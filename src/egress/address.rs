//! Which addresses a connection may go to, whatever the allow list says.
//!
//! The proxy resolves names itself and connects only to an address that passed
//! [`AddressPolicy::check`], so a name that resolves (or is rebound) to loopback, a private
//! network, link-local, multicast or a cloud metadata service reaches nothing. IPv4 written
//! inside IPv6 (mapped `::ffff:a.b.c.d`, compatible, NAT64 `64:ff9b::/96`, 6to4, Teredo) is
//! judged by the IPv4 address it carries. `MCP_BRIDGE_ALLOW_PRIVATE` opts addresses or
//! networks in, for tests and home labs; nothing else does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// `127.0.0.0/8`, `::1`: the host itself.
    Loopback,
    /// RFC 1918, shared (CGNAT) space, IPv6 unique local: networks behind the host.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud provider's instance metadata service.
    CloudMetadata,
    /// Multicast and broadcast.
    Multicast,
    /// `0.0.0.0`, `::`, and the rest of "this network".
    Unspecified,
    /// Reserved, documentation and benchmarking ranges, which no public host uses.
    Reserved,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "a loopback address",
            Self::Private => "a private network address",
            Self::LinkLocal => "a link-local address",
            Self::CloudMetadata => "a cloud metadata address",
            Self::Multicast => "a multicast or broadcast address",
            Self::Unspecified => "an unspecified address",
            Self::Reserved => "a reserved address",
        })
    }
}

/// The addresses the user opted in (`MCP_BRIDGE_ALLOW_PRIVATE`), and the check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    opted_in: Vec<IpNet>,
}

impl AddressPolicy {
    /// Parses `MCP_BRIDGE_ALLOW_PRIVATE`: addresses or networks (`127.0.0.1`,
    /// `192.168.1.0/24`, `::1`), separated by commas or spaces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let opted_in = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`{part}` in MCP_BRIDGE_ALLOW_PRIVATE is not an address or network")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { opted_in })
    }

    /// The opted-in networks, as the setting shows them.
    pub fn opted_in(&self) -> &[IpNet] {
        &self.opted_in
    }

    /// `Ok` when a connection may go to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), Forbidden> {
        let Some(forbidden) = classify(address) else {
            return Ok(());
        };
        let opted_in = |a: IpAddr| self.opted_in.iter().any(|net| net.contains(&a));
        // Metadata services stay out even inside an opted-in private range, unless named
        // on their own.
        let explicitly = |a: IpAddr| {
            self.opted_in
                .iter()
                .any(|net| net.contains(&a) && net.prefix_len() == net.max_prefix_len())
        };
        let address = embedded_v4(address).map_or(address, IpAddr::V4);
        match forbidden {
            Forbidden::CloudMetadata if explicitly(address) => Ok(()),
            Forbidden::CloudMetadata => Err(forbidden),
            _ if opted_in(address) => Ok(()),
            _ => Err(forbidden),
        }
    }
}

/// Why `address` is not public, or `None` when it is.
pub fn classify(address: IpAddr) -> Option<Forbidden> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(IpAddr::V6(v6)) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<Forbidden> {
    let [b0, b1, b2, b3] = a.octets();
    Some(match (b0, b1, b2, b3) {
        (169, 254, 169, 254) | (100, 100, 100, 200) | (192, 0, 0, 192) => Forbidden::CloudMetadata,
        (0, ..) => Forbidden::Unspecified,
        (127, ..) => Forbidden::Loopback,
        (10, ..) | (192, 168, ..) => Forbidden::Private,
        (172, b, ..) if (16..32).contains(&b) => Forbidden::Private,
        (100, b, ..) if (64..128).contains(&b) => Forbidden::Private,
        (169, 254, ..) => Forbidden::LinkLocal,
        (224..=239, ..) | (255, 255, 255, 255) => Forbidden::Multicast,
        // Reserved (240/4), IETF protocol assignments, documentation (TEST-NET-1..3),
        // benchmarking, the 6to4 relay.
        (240..=255, ..)
        | (192, 0, 0 | 2, _)
        | (198, 51, 100, _)
        | (203, 0, 113, _)
        | (198, 18 | 19, ..)
        | (192, 88, 99, _) => Forbidden::Reserved,
        _ => return None,
    })
}

fn classify_v6(a: Ipv6Addr) -> Option<Forbidden> {
    let s = a.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Forbidden::Unspecified,
        [0, 0, 0, 0, 0, 0, 0, 1] => Forbidden::Loopback,
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => Forbidden::CloudMetadata,
        [first, ..] if first & 0xfe00 == 0xfc00 => Forbidden::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => Forbidden::LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => Forbidden::Private, // site-local, deprecated
        [first, ..] if first & 0xff00 == 0xff00 => Forbidden::Multicast,
        // Documentation, discard-only, and the rest of ::/8 other than the forms above.
        [0x2001, 0x0db8, ..] | [0x3fff | 0, ..] | [0x0100, 0, 0, 0, ..] => Forbidden::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:0:0/96`), compatible
/// (`::/96`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`) and Teredo's
/// client address (`2001::/32`, inverted).
fn embedded_v4(address: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = address else {
        return None;
    };
    let s = v6.segments();
    let from = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) > (0, 1) => Some(from(hi, lo)),
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 1, _, _, _, hi, lo]
        | [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(from(!hi, !lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &AddressPolicy, text: &str) -> Option<Forbidden> {
        policy.check(text.parse().unwrap()).err()
    }

    #[test]
    fn public_addresses_pass() {
        let policy = AddressPolicy::default();
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "151.101.0.223",
            "2a04:4e42::223",
            "2606:4700::1111",
        ] {
            assert_eq!(refused(&policy, text), None, "{text}");
        }
    }

    #[test]
    fn internal_addresses_are_refused_with_why() {
        let policy = AddressPolicy::default();
        for (text, why) in [
            ("127.0.0.1", Forbidden::Loopback),
            ("127.8.9.10", Forbidden::Loopback),
            ("::1", Forbidden::Loopback),
            ("10.1.2.3", Forbidden::Private),
            ("172.16.0.1", Forbidden::Private),
            ("172.31.255.255", Forbidden::Private),
            ("192.168.1.1", Forbidden::Private),
            ("100.64.0.1", Forbidden::Private),
            ("fd12:3456::1", Forbidden::Private),
            ("169.254.1.1", Forbidden::LinkLocal),
            ("fe80::1", Forbidden::LinkLocal),
            ("169.254.169.254", Forbidden::CloudMetadata),
            ("fd00:ec2::254", Forbidden::CloudMetadata),
            ("100.100.100.200", Forbidden::CloudMetadata),
            ("224.0.0.1", Forbidden::Multicast),
            ("255.255.255.255", Forbidden::Multicast),
            ("ff02::1", Forbidden::Multicast),
            ("0.0.0.0", Forbidden::Unspecified),
            ("::", Forbidden::Unspecified),
            ("240.0.0.1", Forbidden::Reserved),
            ("203.0.113.9", Forbidden::Reserved),
            ("2001:db8::1", Forbidden::Reserved),
        ] {
            assert_eq!(refused(&policy, text), Some(why), "{text}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        let policy = AddressPolicy::default();
        for (text, why) in [
            ("::ffff:127.0.0.1", Forbidden::Loopback),
            ("::ffff:7f00:1", Forbidden::Loopback),
            ("::ffff:169.254.169.254", Forbidden::CloudMetadata),
            ("::127.0.0.1", Forbidden::Loopback),
            ("64:ff9b::10.0.0.1", Forbidden::Private),
            ("2002:7f00:1::", Forbidden::Loopback),
            ("2002:c0a8:0101::1", Forbidden::Private),
            // Teredo: the client's address is stored inverted.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Forbidden::Loopback),
        ] {
            assert_eq!(refused(&policy, text), Some(why), "{text}");
        }
        assert_eq!(refused(&policy, "::ffff:1.1.1.1"), None);
    }

    #[test]
    fn opting_in_opens_exactly_what_it_names() {
        let policy = AddressPolicy::parse("127.0.0.1, 192.168.7.0/24 ::1").unwrap();
        assert_eq!(refused(&policy, "127.0.0.1"), None);
        assert_eq!(refused(&policy, "::ffff:127.0.0.1"), None);
        assert_eq!(refused(&policy, "127.0.0.2"), Some(Forbidden::Loopback));
        assert_eq!(refused(&policy, "192.168.7.40"), None);
        assert_eq!(refused(&policy, "192.168.8.1"), Some(Forbidden::Private));
        assert_eq!(refused(&policy, "::1"), None);
        let wide = AddressPolicy::parse("169.254.0.0/16,100.64.0.0/10").unwrap();
        assert_eq!(
            refused(&wide, "169.254.169.254"),
            Some(Forbidden::CloudMetadata),
            "a range never opens the metadata service"
        );
        assert_eq!(
            refused(&wide, "100.100.100.200"),
            Some(Forbidden::CloudMetadata)
        );
        let named = AddressPolicy::parse("169.254.169.254").unwrap();
        assert_eq!(refused(&named, "169.254.169.254"), None);
        assert!(
            AddressPolicy::parse("localhost")
                .unwrap_err()
                .contains("localhost")
        );
    }
}
