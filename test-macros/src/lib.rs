//! `allot-test-macros`: the attribute every integration test in `tests/tests/` carries,
//! `#[allot_tests::test]` (re-exported there). It is `#[tokio::test]` (arguments such as
//! `flavor = "multi_thread"` pass through) with the body run under
//! `allot_tests::bounded`, so a test that waits on a dead server fails with its name and
//! its limit instead of hanging the run.
//!
//! Invariant: the test's body is unchanged; only a deadline is put around it.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn};

/// `#[tokio::test(ARGS)]` whose body must finish within the harness's per-test limit.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let ItemFn { attrs, vis, sig, block } = parse_macro_input!(item as ItemFn);
    if sig.asyncness.is_none() {
        let message = "#[allot_tests::test] is for async tests; a sync test can use #[test]";
        return syn::Error::new_spanned(sig.fn_token, message).to_compile_error().into();
    }
    let name = sig.ident.to_string();
    let tokio_args = if args.is_empty() { quote!() } else { quote!((#args)) };
    quote! {
        #[::tokio::test #tokio_args]
        #(#attrs)*
        #vis #sig {
            ::allot_tests::bounded(#name, async move #block).await
        }
    }
    .into()
}
