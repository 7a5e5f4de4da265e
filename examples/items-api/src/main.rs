//! Serve the items API. `PORTCULLIS_JWK_URL` (the server's
//! `/.well-known/jwks.json`) or `PORTCULLIS_SIGNING_KEY` (a shared HMAC
//! secret) says whose tokens to trust; `ITEMS_BIND` where to listen.

use portcullis_verify::Verifier;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Verifier::builder();
    if let Ok(url) = std::env::var("PORTCULLIS_JWK_URL") {
        builder = builder.jwk_url(url);
    }
    if let Ok(secret) = std::env::var("PORTCULLIS_SIGNING_KEY") {
        builder = builder.signing_key(secret);
    }
    let bind = std::env::var("ITEMS_BIND").unwrap_or_else(|_| "127.0.0.1:8001".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, items_api::router(builder.build()?)).await?;
    Ok(())
}
