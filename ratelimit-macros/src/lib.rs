//! placeholder
use proc_macro::TokenStream;
/// placeholder
#[proc_macro_attribute]
pub fn ratelimit(_args: TokenStream, item: TokenStream) -> TokenStream { item }
