//! Entry points for the cargo-fuzz targets in `fuzz/`: each feeds a receiver's bytes to one of
//! our own decoders, as the alerter reads them, and panics when what comes out breaks the
//! decoder's bounds. Not an API: public only because the fuzz crate is another crate.

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
