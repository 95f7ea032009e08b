"""Tiny randomly initialised diffusers pipelines built from configs (no download): they prove
the wiring, batching, seeding, caching and storage of renders, not picture quality."""

from __future__ import annotations

from pathlib import Path

from worker.kinds import TASK_KINDS


def _tokenizer(folder: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TASK_KINDS["image-caption"].pool[:2000], vocab_size=500, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    return RobertaTokenizer.from_pretrained(str(folder), model_max_length=32)


def _parts(folder: Path, unet_in_channels: int):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tokenizer(folder / "bpe")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=unet_in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=4,
        attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, vocab_size=len(tokenizer), hidden_size=32,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=40))
    scheduler = DDIMScheduler(clip_sample=False)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_text_to_image(folder: Path) -> Path:
    """A Stable Diffusion pipeline of about 300k parameters, saved as a checkpoint folder."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline(**_parts(folder, unet_in_channels=4)).save_pretrained(folder / "sd")
    return folder / "sd"


def build_instruct_pix2pix(folder: Path) -> Path:
    """An InstructPix2Pix pipeline (the UNet also sees the input image's latents: 8 channels)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    StableDiffusionInstructPix2PixPipeline(**_parts(folder, unet_in_channels=8)).save_pretrained(folder / "ip2p")
    return folder / "ip2p"
