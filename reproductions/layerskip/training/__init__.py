"""LayerSkip training recipe (arXiv 2404.16710 §4.1, §5): layer dropout, early-exit loss, curricula, trainer."""
from .curriculum import Curriculum, GradualCurriculum, NoCurriculum, RotationalCurriculum, make_curriculum
from .early_exit_loss import early_exit_loss, layer_loss_weights, loss_scales, per_layer_accuracy
from .layer_dropout import LayerDropout, depth_scale, dropout_rates, time_scale
from .recipe import SETTINGS, VARIANTS, TrainConfig, setting

__all__ = [
    "Curriculum", "GradualCurriculum", "NoCurriculum", "RotationalCurriculum", "make_curriculum",
    "early_exit_loss", "layer_loss_weights", "loss_scales", "per_layer_accuracy",
    "LayerDropout", "depth_scale", "dropout_rates", "time_scale",
    "SETTINGS", "VARIANTS", "TrainConfig", "setting",
]
