"""2-D max pooling computed in channels-last memory order on the CPU: the same numbers, several times faster.

PyTorch's CPU kernel for max pooling of an (N, C, H, W)-contiguous tensor is far slower than its kernel for
channels-last tensors (torch 2.14, 2 threads: tiny_vgg's first pooling of a batch of 64 takes 18 ms against
2.7 ms; it was a quarter of a training step and half of an evaluation forward pass). The maximum of a
window and the position it is taken from do not depend on how the tensor is laid out in memory, so pooling
a channels-last copy and handing the result on in the usual layout gives bit-identical outputs, indices and
gradients; the next layer then sees exactly the input it saw before, so a convolution computes exactly
what it did (a channels-last input would let it choose another algorithm, and other rounding).

:func:`pool_in_channels_last` swaps every ``nn.MaxPool2d`` of a model built by :func:`models.get_model`
for :class:`MaxPool2d`, a subclass that only changes where the computation happens; the explanation
code treats both alike (``utils.lrp``).
"""
import torch
import torch.nn.functional as F
from torch import nn


def _pooled_in_channels_last(x):
    # only where the slow kernel would run: CPU, 4-D, not channels-last already; gradients flow through
    # the two copies unchanged
    return x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """``F.max_pool2d`` with the same result, computed on a channels-last copy on the CPU."""
    if not _pooled_in_channels_last(x):
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)
    out = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel_size, stride, padding, dilation,
                       ceil_mode=ceil_mode, return_indices=return_indices)
    if return_indices:
        return out[0].contiguous(), out[1].contiguous()
    return out.contiguous()


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools in channels-last order on the CPU (same outputs and gradients)."""

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode,
                          return_indices=self.return_indices)


def pool_in_channels_last(model):
    """Replace every plain ``nn.MaxPool2d`` of ``model`` by :class:`MaxPool2d` with the same settings
    (no parameters, so state dicts and checkpoints are unchanged)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.MaxPool2d:
                setattr(parent, name, MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation,
                                                return_indices=child.return_indices, ceil_mode=child.ceil_mode))
    return model
