//! Entry points for the cargo-fuzz targets in `fuzz/`: each feeds a receiver's bytes to one of
//! our own decoders, as the alerter reads them, and panics when what comes out breaks the
//! decoder's bounds. Not an API: public only because the fuzz crate is another crate.

use crate::resp::{self, Reply};

/// Bytes of payload in a reply, to bound it by what was read.
fn size(r: &Reply) -> usize {
    match r {
        Reply::Simple(s) => s.len(),
        Reply::Int(_) | Reply::Bulk(None) => 0,
        Reply::Bulk(Some(b)) => b.len(),
        Reply::Array(items) => items.len() + items.iter().map(size).sum::<usize>(),
    }
}

/// RESP replies read back to back, as the redis alerter reads a pipeline; returns how many
/// were read before the first error.
pub fn resp_replies(input: &[u8]) -> usize {
    let mut io = input;
    let mut read = 0;
    // Reading from a slice never waits, so polling once to completion is enough.
    while let Ok(r) = futures::executor::block_on(resp::read(&mut io)) {
        read += 1;
        assert!(size(&r) <= input.len(), "{r:?} from {input:?}");
        assert!(read <= input.len(), "more replies than bytes");
    }
    read
}

/// A mauve AlertUpdate (protobuf) as the mauve alerter's tests and a receiver read it: a
/// decoded update holds no more alerts than the bytes it came from.
pub fn mauve_update(input: &[u8]) -> bool {
    let Ok(u) = crate::mauve::wire::decode(input) else {
        return false;
    };
    assert!(u.alert.len() <= input.len());
    let text: usize = u.alert.iter().map(|a| a.id.len()).sum::<usize>() + u.source.len();
    assert!(text <= input.len());
    true
}
