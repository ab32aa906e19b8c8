//! Prints the API's OpenAPI document: `cargo run -p web --example openapi > openapi.json`.

fn main() {
    let doc = web::openapi();
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).expect("the document serializes")
    );
}
