"""Vision transformers (torchvision, imported when one is built). LRP by conservative propagation,
see ``utils.lrp.vit``."""
from models.registry import register_model


@register_model("vit_b_16", layer_names=tuple(f"encoder.layers.encoder_layer_{i}" for i in range(12)),
                composite="vit_conservative", default_layer="encoder.layers.encoder_layer_10")
def build_vit_b_16(n_classes, img_size=224, in_channels=3):
    from torchvision.models import vit_b_16

    return vit_b_16(weights=None, image_size=img_size, num_classes=n_classes)


@register_model("tiny_vit", layer_names=("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"),
                composite="vit_conservative", default_layer="encoder.layers.encoder_layer_1",
                tags=("small",))
def build_tiny_vit(n_classes, img_size=64, in_channels=3):
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=img_size, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=32, mlp_dim=64, num_classes=n_classes)
