//! Address blocks: IPv4 CIDR (`192.0.2.0/28`) and ranges (`192.0.2.10-192.0.2.20` or
//! `192.0.2.10-20`), as targets of test lines and of `custodian scan`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most addresses one target may expand to without an explicit opt-in (a /16).
pub const LARGE: u64 = 1 << 16;

/// An inclusive block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    V4(u32, u32),
    V6(Ipv6Addr),
}

impl Block {
    /// How many addresses the block holds.
    pub fn len(&self) -> u64 {
        match self {
            Block::V4(a, b) => u64::from(b - a) + 1,
            Block::V6(_) => 1,
        }
    }

    /// Never true: a block holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `ip` lies inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Block::V4(a, z), IpAddr::V4(x)) => (*a..=*z).contains(&u32::from(x)),
            (Block::V6(a), IpAddr::V6(x)) => *a == x,
            _ => false,
        }
    }

    /// Every address of the block, in order.
    pub fn addresses(self) -> Box<dyn Iterator<Item = IpAddr>> {
        match self {
            Block::V4(a, z) => Box::new((a..=z).map(|n| IpAddr::V4(n.into()))),
            Block::V6(ip) => Box::new(std::iter::once(IpAddr::V6(ip))),
        }
    }
}

/// Parses one target: an IP, `IP/BITS` (IPv4), `IP-IP` or `IP-LAST_OCTET`.
pub fn parse_block(text: &str) -> Result<Block, String> {
    let t = text.trim();
    if let Some((ip, bits)) = t.split_once('/') {
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("bad CIDR {t:?}"))?;
        let bits: u32 = bits
            .parse()
            .ok()
            .filter(|b| *b <= 32)
            .ok_or_else(|| format!("bad prefix in {t:?}"))?;
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        let start = u32::from(ip) & mask;
        return Ok(Block::V4(start, start | !mask));
    }
    if let Some((a, b)) = t.split_once('-') {
        let a: Ipv4Addr = a.parse().map_err(|_| format!("bad range {t:?}"))?;
        let b = match b.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => {
                let last: u8 = b.parse().map_err(|_| format!("bad range {t:?}"))?;
                let o = a.octets();
                Ipv4Addr::new(o[0], o[1], o[2], last)
            }
        };
        if b < a {
            return Err(format!("range {t:?} ends before it starts"));
        }
        return Ok(Block::V4(a.into(), b.into()));
    }
    match t.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(Block::V4(ip.into(), ip.into())),
        Ok(IpAddr::V6(ip)) => Ok(Block::V6(ip)),
        Err(_) => Err(format!(
            "{t:?} is not an IP address, CIDR block or range (names are not resolved)"
        )),
    }
}

/// A test target that is a CIDR block or a range (not a plain host, IP or URL), if it is one.
pub fn target_block(target: &str) -> Option<Block> {
    let looks_like = target.starts_with(|c: char| c.is_ascii_digit())
        && (target.contains('/') || target.contains('-'))
        && !target.contains("://");
    looks_like.then(|| parse_block(target).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str, b: &str) -> Block {
        let a: Ipv4Addr = a.parse().expect("ip");
        let b: Ipv4Addr = b.parse().expect("ip");
        Block::V4(a.into(), b.into())
    }

    #[test]
    fn blocks_parse() {
        assert_eq!(
            parse_block("127.0.70.0/30"),
            Ok(v4("127.0.70.0", "127.0.70.3"))
        );
        assert_eq!(
            parse_block("127.0.70.5/24"),
            Ok(v4("127.0.70.0", "127.0.70.255"))
        );
        assert_eq!(parse_block("127.0.0.1-3"), Ok(v4("127.0.0.1", "127.0.0.3")));
        assert_eq!(
            parse_block("127.0.0.9-127.0.1.1"),
            Ok(v4("127.0.0.9", "127.0.1.1"))
        );
        assert_eq!(parse_block("::1").map(|b| b.len()), Ok(1));
        assert!(parse_block("127.0.0.5-1").is_err());
        assert!(parse_block("127.0.0.0/33").is_err());
        assert!(parse_block("web1").is_err());
        assert_eq!(parse_block("0.0.0.0/0").map(|b| b.len()), Ok(1 << 32));
    }

    #[test]
    fn only_blocks_are_target_blocks() {
        assert_eq!(
            target_block("192.0.2.0/31"),
            Some(v4("192.0.2.0", "192.0.2.1"))
        );
        assert_eq!(
            target_block("192.0.2.1-2"),
            Some(v4("192.0.2.1", "192.0.2.2"))
        );
        for plain in [
            "192.0.2.1",
            "web-1",
            "http://192.0.2.1/x",
            "1-800-flowers.example",
            "::1",
        ] {
            assert_eq!(target_block(plain), None, "{plain}");
        }
        let b = v4("192.0.2.1", "192.0.2.2");
        assert!(b.contains("192.0.2.2".parse().expect("ip")));
        let all: Vec<IpAddr> = b.addresses().collect();
        assert_eq!(all.len(), 2);
    }
}
