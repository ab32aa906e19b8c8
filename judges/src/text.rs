//! Text measures shared by the judges: word counts and n-gram copying.

use std::collections::HashSet;

/// Words, split on whitespace: the unit of length control.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn normalized_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn shingles(words: &[String], n: usize) -> HashSet<&[String]> {
    if words.len() < n {
        return HashSet::new();
    }
    words.windows(n).collect()
}

/// The share of `response`'s word 4-grams that also occur in `source`, in [0, 1].
/// Responses under four words copy nothing by this measure.
pub fn containment(response: &str, source: &str) -> f64 {
    const N: usize = 4;
    let r = normalized_words(response);
    let s = normalized_words(source);
    let rs = shingles(&r, N);
    if rs.is_empty() {
        return 0.0;
    }
    let ss = shingles(&s, N);
    rs.iter().filter(|g| ss.contains(*g)).count() as f64 / rs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_measures_copied_shingles() {
        let src = "The quick brown fox jumps over the lazy dog";
        assert_eq!(containment("the QUICK brown fox, jumps!", src), 1.0);
        assert_eq!(containment("completely different words here now", src), 0.0);
        let half = containment("the quick brown fox sings a happy song", src);
        assert!(half > 0.0 && half < 1.0, "{half}");
        assert_eq!(containment("too short", src), 0.0);
    }

    #[test]
    fn counts_words() {
        assert_eq!(word_count("  a b\n c  "), 3);
    }
}
