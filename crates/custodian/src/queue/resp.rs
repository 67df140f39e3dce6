//! How the queue's brokers' errors are sorted: a refusal that retrying cannot cure, a passing
//! outage, or a protocol error. (The Redis wire protocol itself is the `redis` crate's.)

use custodian_core::queue::QueueError;

/// Sorts an error reply: a refusal that retrying cannot cure (credentials, a database that
/// does not exist, permissions), a passing state worth waiting out (loading, a busy script,
/// a replica catching up), or anything else (a protocol error).
pub(crate) fn classify(e: String) -> QueueError {
    let upper = e.to_ascii_uppercase();
    let code = upper.split_whitespace().next().unwrap_or_default();
    let refused = matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM")
        || [
            "ERR INVALID PASSWORD",
            "ERR DB INDEX IS OUT OF RANGE",
            "ERR INVALID DB INDEX",
            "ERR CLIENT SENT AUTH, BUT NO PASSWORD IS SET",
            "ERR AUTH <PASSWORD> CALLED WITHOUT ANY PASSWORD CONFIGURED",
            "ERR SELECT IS NOT ALLOWED IN CLUSTER MODE",
            "ERR UNKNOWN COMMAND",
        ]
        .iter()
        .any(|p| upper.starts_with(p));
    if refused {
        QueueError::Refused(e)
    } else if matches!(
        code,
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY"
    ) {
        QueueError::Unavailable(e)
    } else {
        QueueError::Protocol(e)
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_passing_trouble() {
        let kind = |e: &str| match classify(e.into()) {
            QueueError::Refused(_) => "refused",
            QueueError::Unavailable(_) => "transient",
            _ => "protocol",
        };
        assert_eq!(kind("NOAUTH Authentication required."), "refused");
        assert_eq!(
            kind("WRONGPASS invalid username-password pair or user is disabled."),
            "refused"
        );
        assert_eq!(kind("ERR invalid password"), "refused");
        assert_eq!(kind("ERR DB index is out of range"), "refused");
        assert_eq!(kind("NOPERM this user has no permissions"), "refused");
        assert_eq!(
            kind("LOADING Redis is loading the dataset in memory"),
            "transient"
        );
        assert_eq!(kind("BUSY Redis is busy running a script"), "transient");
        assert_eq!(kind("ERR Error running script"), "protocol");
    }
}
