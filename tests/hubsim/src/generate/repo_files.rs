//! The small files around the weights: generation config, tokenizer, tokenizer config and model
//! card, shaped like those of deepseek-ai/DeepSeek-R1 (content is synthetic).

use serde_json::{json, Map, Value};

use super::Layout;

const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
const PAD: &str = "<｜▁pad▁｜>";

/// generation_config.json: R1's recommended sampling settings.
pub fn generation_config() -> Value {
    json!({
        "_from_model_config": true,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "do_sample": true,
        "temperature": 0.6,
        "top_p": 0.95,
        "transformers_version": "4.46.3"
    })
}

/// tokenizer.json: a byte-level BPE in the `tokenizers` format with the three special tokens
/// (ids 0-2) and the 256 byte tokens, no merges. Small on purpose: the real one is 7.8 MB.
pub fn tokenizer() -> Value {
    let specials = [BOS, EOS, PAD];
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, token) in specials.iter().enumerate() {
        vocab.insert((*token).to_owned(), json!(id));
        added.push(json!({
            "id": id,
            "content": token,
            "single_word": false,
            "lstrip": false,
            "rstrip": false,
            "normalized": true,
            "special": true
        }));
    }
    for (i, ch) in byte_level_alphabet().into_iter().enumerate() {
        vocab.insert(ch.to_string(), json!(specials.len() + i));
    }
    let byte_level = json!({
        "type": "ByteLevel",
        "add_prefix_space": false,
        "trim_offsets": true,
        "use_regex": true
    });
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": []
        }
    })
}

/// GPT-2's byte-to-unicode table: printable bytes stand for themselves, the rest are shifted
/// past U+0100 so that every byte is a visible character.
fn byte_level_alphabet() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
        })
        .collect()
}

/// tokenizer_config.json.
pub fn tokenizer_config() -> Value {
    json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": null,
        "clean_up_tokenization_spaces": false,
        "legacy": true,
        "model_max_length": 16384,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    })
}

/// README.md: a model card that says plainly what this is.
pub fn readme(
    repo: &str,
    layout: Layout,
    seed: u64,
    shards: u32,
    tensor_bytes: u64,
    config: &Value,
) -> String {
    let like = match layout {
        Layout::R1 => "deepseek-ai/DeepSeek-R1",
        Layout::Distill => "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    };
    let field = |k: &str| {
        config
            .get(k)
            .map_or_else(|| "-".to_owned(), Value::to_string)
    };
    format!(
        "---\nlicense: mit\nlibrary_name: transformers\ntags:\n- hubsim\n- synthetic\n---\n\
         # {repo} (synthetic)\n\n\
         Written by `hubsim generate --layout {layout} --seed {seed}` for ferry's tests and demo. \
         The files have the layout of {like}: the same file names, tensor names and dtypes, \
         with widths scaled down. The weights are pseudo-random bytes: do not load them for \
         inference.\n\n\
         | | |\n|---|---|\n\
         | shards | {shards} |\n\
         | tensor bytes | {tensor_bytes} |\n\
         | num_hidden_layers | {} |\n\
         | hidden_size | {} |\n\
         | n_routed_experts | {} |\n\
         | vocab_size | {} |\n",
        field("num_hidden_layers"),
        field("hidden_size"),
        field("n_routed_experts"),
        field("vocab_size"),
        layout = layout.name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_256_distinct_chars() {
        let mut chars = byte_level_alphabet();
        assert_eq!(chars[b'A' as usize], 'A');
        assert_eq!(chars[b' ' as usize], 'Ġ');
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 256);
    }
}
