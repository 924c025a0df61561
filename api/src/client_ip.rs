//! Which address a request came from, for per-IP limits and the audit trail.
//!
//! Behind a reverse proxy the peer is the proxy, and the client is in `X-Forwarded-For`,
//! which every hop appends to. Only the entries our own proxies appended can be believed:
//! anything to their left was written by whoever sent the request, so a client could name
//! any address it likes there (and escape every per-IP limit). The client is therefore the
//! rightmost address that is not one of our proxies, walking left from the peer while the
//! hops are trusted. With no trusted proxies the header is ignored.

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    /// `http.trusted_proxies`: addresses and CIDR blocks.
    nets: Vec<IpNet>,
    /// `http.trust_forwarded_for`: the peer itself is a proxy, whatever its address.
    peer_is_proxy: bool,
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks.
    pub fn parse(list: &str, peer_is_proxy: bool) -> Result<TrustedProxies, String> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted_proxies: {s:?} is not an address or CIDR block"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets, peer_is_proxy })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the peer and the request's `X-Forwarded-For`.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !(self.peer_is_proxy || self.trusts(peer)) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for.unwrap_or("").rsplit(',') {
            // Garbage where an address should be: nothing left of it can be believed.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_rightmost_address_our_proxies_did_not_write_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.1", false).unwrap();
        let lb = ip("10.1.2.3");
        // The client forged the leftmost entry; our proxies appended the rest.
        let header = Some("203.0.113.66, 198.51.100.7, 192.0.2.1");
        assert_eq!(proxies.client(lb, header), ip("198.51.100.7"));
        assert_eq!(proxies.client(lb, Some("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(proxies.client(lb, None), lb, "no header: the proxy itself");
        assert_eq!(proxies.client(lb, Some("nonsense, 198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(proxies.client(lb, Some("198.51.100.7, nonsense")), lb);
        // From an untrusted peer the header means nothing.
        assert_eq!(proxies.client(ip("198.51.100.9"), header), ip("198.51.100.9"));
        assert_eq!(TrustedProxies::default().client(lb, header), lb);
    }

    #[test]
    fn a_peer_trusted_as_a_proxy_lends_its_trust_to_no_one_else() {
        let proxies = TrustedProxies::parse("", true).unwrap();
        let header = Some("203.0.113.66, 198.51.100.7");
        assert_eq!(proxies.client(ip("127.0.0.1"), header), ip("198.51.100.7"));
        assert!(TrustedProxies::parse("10.0.0.0/33", false).is_err());
        assert!(TrustedProxies::parse("proxy.example", false).is_err());
    }
}
