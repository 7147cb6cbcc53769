//! Tokenisation that works for Chinese: CJK text has no spaces between words,
//! so a word tokenizer would make a whole sentence one token and find nothing
//! inside it. Runs of CJK characters become overlapping bigrams (the approach
//! of Lucene's CJKBigramFilter): "报价单" is indexed as 报价, 价单 at consecutive
//! positions, and a query of any CJK substring of two or more characters is
//! the phrase of its bigrams, which matches exactly where that substring
//! occurs. A second field indexes every CJK character alone, for one-character
//! queries. Other letters and digits form lowercase words.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Name of the bigram tokenizer in the index's tokenizer manager.
pub const BIGRAM: &str = "wwa_cjk_bigram";
/// Name of the unigram tokenizer.
pub const UNIGRAM: &str = "wwa_cjk_unigram";

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF) // Extensions B and later
}

/// How CJK runs are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Overlapping pairs (a run of one character stays one token).
    Bigram,
    /// Every character alone.
    Unigram,
}

/// The tokenizer (both modes).
#[derive(Debug, Clone, Copy)]
pub struct CjkTokenizer(pub Mode);

/// Tokens of `text` in order. Positions count tokens, with one left out after
/// each CJK run: "报价，价单" must not match the phrase 报价 价单 of "报价单".
pub fn tokens(text: &str, mode: Mode) -> Vec<Token> {
    fn push(out: &mut Vec<Token>, position: &mut usize, from: usize, to: usize, text: String) {
        out.push(Token { offset_from: from, offset_to: to, position: *position, text, position_length: 1 });
        *position += 1;
    }
    let mut out = Vec::new();
    let mut position = 0usize;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i + 1).map_or(text.len(), |(o, _)| *o);
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if is_cjk(c) {
            let mut j = i;
            while j < chars.len() && is_cjk(chars[j].1) {
                j += 1;
            }
            let run = &chars[i..j];
            match mode {
                Mode::Unigram => {
                    for (k, (o, ch)) in run.iter().enumerate() {
                        push(&mut out, &mut position, *o, end_of(i + k), ch.to_string());
                    }
                }
                Mode::Bigram if run.len() == 1 => {
                    push(&mut out, &mut position, start, end_of(i), c.to_string())
                }
                Mode::Bigram => {
                    for k in 0..run.len() - 1 {
                        let s: String = [run[k].1, run[k + 1].1].iter().collect();
                        push(&mut out, &mut position, run[k].0, end_of(i + k + 1), s);
                    }
                }
            }
            position += 1;
            i = j;
        } else if c.is_alphanumeric() {
            let mut j = i;
            while j < chars.len() && chars[j].1.is_alphanumeric() && !is_cjk(chars[j].1) {
                j += 1;
            }
            let word: String = chars[i..j].iter().map(|(_, ch)| *ch).collect::<String>().to_lowercase();
            push(&mut out, &mut position, start, end_of(j - 1), word);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// A precomputed token list as tantivy's stream.
pub struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream { tokens: tokens(text, self.0), next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str, mode: Mode) -> Vec<String> {
        tokens(s, mode).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn cjk_runs_become_bigrams_and_words_stay_words() {
        assert_eq!(
            texts("报价单已发到Email, 请查收!", Mode::Bigram),
            ["报价", "价单", "单已", "已发", "发到", "email", "请查", "查收"]
        );
        assert_eq!(texts("好 ok 3pm", Mode::Bigram), ["好", "ok", "3pm"]);
        assert_eq!(texts("请查收", Mode::Unigram), ["请", "查", "收"]);
        assert!(texts("，。！ ...", Mode::Bigram).is_empty());
    }

    #[test]
    fn positions_leave_a_gap_after_cjk_runs_and_offsets_cover_the_source() {
        let s = "订单A12号已发货";
        let t = tokens(s, Mode::Bigram);
        for tok in &t {
            let src = &s[tok.offset_from..tok.offset_to];
            assert_eq!(src.to_lowercase(), tok.text, "{tok:?}");
        }
        assert_eq!(texts(s, Mode::Bigram), ["订单", "a12", "号已", "已发", "发货"]);
        let pos: Vec<usize> = t.iter().map(|t| t.position).collect();
        assert_eq!(pos, [0, 2, 3, 4, 5]);
        // Two runs split by punctuation are not one phrase.
        let pos: Vec<usize> = tokens("报价，价单", Mode::Bigram).iter().map(|t| t.position).collect();
        assert_eq!(pos, [0, 2]);
    }
}
