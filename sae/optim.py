"""The optimisers, written out: plain SGD (the lecture's p -= lr * grad), SGD with
momentum, and Adam, with torch.optim's arithmetic and defaults; decoupled weight decay as
in torch.optim.AdamW.

Why not torch.optim: building one of its optimisers imports torch._dynamo, about a second
of start-up in every stage process, for a few lines of arithmetic.
"""
import math

import torch


class SGD:
    """p -= lr * g, or with momentum: v = momentum * v + g (v = g at first); p -= lr * v."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.weight_decay = weight_decay
        self.velocity = None

    @torch.no_grad()
    def decay(self):
        """Decoupled weight decay (Loshchilov and Hutter): p -= lr * weight_decay * p."""
        if self.weight_decay:
            for p in self.params:
                p.mul_(1 - self.lr * self.weight_decay)

    @torch.no_grad()
    def step(self):
        self.decay()
        grads = [p.grad for p in self.params]
        if self.momentum:
            if self.velocity is None:
                self.velocity = [g.clone() for g in grads]
            else:
                for v, g in zip(self.velocity, grads):
                    v.mul_(self.momentum).add_(g)
            grads = self.velocity
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-self.lr)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class Adam(SGD):
    """Adam (Kingma and Ba) with bias correction; betas (0.9, 0.999), eps 1e-8."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay=weight_decay)
        self.betas, self.eps, self.steps = betas, eps, 0
        self.mean = [torch.zeros_like(p) for p in self.params]
        self.square = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        self.decay()
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.steps)
        root_correction = math.sqrt(1 - beta2 ** self.steps)
        for p, m, s in zip(self.params, self.mean, self.square):
            m.lerp_(p.grad, 1 - beta1)
            s.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denominator = (s.sqrt() / root_correction).add_(self.eps)
            p.addcdiv_(m, denominator, value=-step_size)
