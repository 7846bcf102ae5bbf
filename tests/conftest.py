"""Shared fixtures: small real models built offline, and a small real MiniLM store."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "The cat sat on the mat while the dog slept by the door.",
    "Stocks fell 3% today in Tokyo after the bank raised rates.",
    "A storm is moving north and will bring rain by Friday.",
    "She scored twice in the final minutes of the match.",
    "Add two cups of flour and stir the sauce slowly.",
] * 4


def build_tiny_hf_model(path, arch: str, seed: int = 0):
    """A GPT-2- or Llama-shaped model with random weights and a byte-level BPE tokenizer,
    saved as a Hugging Face model directory (nothing is downloaded)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    vocab = fast.vocab_size
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32,
                                         n_layer=3, n_head=4, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    elif arch == "llama":
        config = transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            bos_token_id=0, eos_token_id=0, pad_token_id=0)
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_hf_model(root / arch, arch) for arch in ("gpt2", "llama")}
