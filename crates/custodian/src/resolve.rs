//! Turning a job's target into the addresses to test, under the attempt's own resolve deadline.

use custodian_core::{Family, Job, TargetKind};
use std::net::IpAddr;
use std::time::Duration;

/// The host part of a target: the URL host for URL targets, the target itself otherwise.
pub(crate) fn host_of(job: &Job, kind: TargetKind) -> String {
    let raw = match kind.is_url(&job.target) {
        true => url::Url::parse(&job.target)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| job.target.clone()),
        false => job.target.clone(),
    };
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Every address of `host` in the job's family. An IP literal is used as is, without any query.
pub(crate) async fn addresses(
    host: &str,
    family: Family,
    limit: Duration,
) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if wanted(ip, family) {
            Ok(vec![ip])
        } else {
            Err(format!("{ip} is not an {} address", family_name(family)))
        };
    }
    let found = tokio::time::timeout(limit, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| {
            format!(
                "resolving {host} timed out after {:.1}s",
                limit.as_secs_f64()
            )
        })?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in found.map(|sa| sa.ip()).filter(|ip| wanted(*ip, family)) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(format!("{host} has no {} address", family_name(family)));
    }
    Ok(ips)
}

fn wanted(ip: IpAddr, family: Family) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Any => "IP",
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn literals_are_used_without_lookup() {
        assert_eq!(
            addresses("127.0.0.2", Family::Any, LIMIT).await,
            Ok(vec!["127.0.0.2".parse().expect("ip")])
        );
        assert_eq!(
            addresses("::1", Family::V6, LIMIT).await,
            Ok(vec!["::1".parse().expect("ip")])
        );
        let err = addresses("127.0.0.1", Family::V6, LIMIT)
            .await
            .expect_err("wrong family");
        assert_eq!(err, "127.0.0.1 is not an IPv6 address");
    }

    #[tokio::test]
    async fn hosts_file_names_resolve() {
        // `localhost` comes from /etc/hosts, so no query leaves the machine.
        let ips = addresses("localhost", Family::V4, LIMIT)
            .await
            .expect("localhost");
        assert!(
            ips.contains(&"127.0.0.1".parse::<IpAddr>().expect("ip")),
            "{ips:?}"
        );
    }

    #[test]
    fn url_hosts_are_extracted() {
        let job = Job::new("http", "http://u:p@[::1]:8080/x", Some(8080));
        assert_eq!(host_of(&job, TargetKind::Url(&["http"])), "::1");
        let job = Job::new("ssh", "web1", Some(22));
        assert_eq!(host_of(&job, TargetKind::Host), "web1");
        let either = TargetKind::HostOrUrl(&["ftp"]);
        let job = Job::new("ftp", "ftp://u:p@127.0.0.9:2121/f", Some(2121));
        assert_eq!(host_of(&job, either), "127.0.0.9");
        let job = Job::new("ftp", "127.0.0.9", Some(21));
        assert_eq!(host_of(&job, either), "127.0.0.9");
    }
}
