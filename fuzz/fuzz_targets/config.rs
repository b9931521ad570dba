//! The config tables of the libraries (what `ssl pretrain --config` deserialises and checks:
//! the `[train]` table, the data and model tables of each modality) parsed from arbitrary TOML
//! and validated: never a panic (no overflow, no division by zero, no indexing past an end) on
//! any value, however large, negative or odd; a config that validates also re-serialises.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn check<T: DeserializeOwned + Serialize>(text: &str, validate: impl Fn(&T) -> Result<(), ssl_core::Error>) {
    if let Ok(cfg) = toml::from_str::<T>(text) {
        if validate(&cfg).is_ok() {
            toml::to_string(&cfg).expect("a valid config serialises");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check::<ssl_core::trainer::TrainConfig>(text, |c| c.validate());
    check::<ssl_core::blocks::TransformerConfig>(text, |c| c.validate());
    check::<ssl_core::blocks::MlpHeadConfig>(text, |c| c.validate());
    check::<ssl_vision::simclr::SimclrConfig>(text, |c| c.validate());
    check::<ssl_text::bert::BertConfig>(text, |c| c.validate());
    check::<ssl_text::gpt::GptConfig>(text, |c| c.validate());
    check::<ssl_audio::wav2vec2::Wav2Vec2Config>(text, |c| c.validate());
    check::<ssl_audio::cpc::CpcConfig>(text, |c| c.validate());
    check::<ssl_audio::data::CropConfig>(text, |c| c.validate());
    check::<ssl_multimodal::clip::ClipConfig>(text, |c| c.validate());
});
