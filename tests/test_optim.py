"""Tests for jaxtune.optim: schedules and optimizers built from traced values match Optax."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtune import optim, optimizers

NUM_STEPS = 100
RTOL = 1e-6
STEPS = np.arange(0, 130)  # past num_steps: schedules must hold their end value


# --------------------------------------------------------------------------- schedules


def _traced_schedule(static, dynamic, steps=STEPS, num_steps=NUM_STEPS):
    """Evaluates the schedule with every dynamic value a tracer (inside jit)."""

    @jax.jit
    def evaluate(dynamic):
        return optim.make_schedule({**static, **dynamic}, num_steps)(jnp.asarray(steps))

    return evaluate({name: jnp.float32(value) for name, value in dynamic.items()})


def _reference(schedule, steps=STEPS):
    return jax.vmap(schedule)(jnp.asarray(steps))


def test_constant_schedule():
    values = _traced_schedule({}, {"learning_rate": 0.03})
    assert values.dtype == jnp.float32
    chex.assert_trees_all_close(values, jnp.full(STEPS.shape, 0.03, jnp.float32), rtol=RTOL)


def test_inverse_time_schedule_matches_formula():
    values = _traced_schedule(
        {"schedule": "inverse_time"}, {"learning_rate": 0.1, "lr_decay": 0.05}
    )
    expected = 0.1 / (1.0 + 0.05 * STEPS.astype(np.float64))
    np.testing.assert_allclose(values, expected, rtol=RTOL)


def test_exponential_schedule_matches_optax():
    values = _traced_schedule(
        {"schedule": "exponential", "transition_steps": 7},
        {"learning_rate": 0.1, "decay_rate": 0.5},
    )
    np.testing.assert_allclose(values, 0.1 * 0.5 ** (STEPS / 7), rtol=RTOL)
    # Optax's float32 `power` with a constant base is itself off by up to 1.2e-6 from the exact
    # value at t = 130 (ours by 5e-7), hence the looser tolerance against Optax only.
    reference = optax.exponential_decay(0.1, transition_steps=7, decay_rate=0.5)
    chex.assert_trees_all_close(values, _reference(reference), rtol=2.5e-6)


def test_step_schedule_matches_optax():
    values = _traced_schedule(
        {"schedule": "step", "step_size": 30}, {"learning_rate": 0.1, "decay_rate": 0.1}
    )
    staircase = optax.exponential_decay(0.1, transition_steps=30, decay_rate=0.1, staircase=True)
    piecewise = optax.piecewise_constant_schedule(0.1, {30: 0.1, 60: 0.1, 90: 0.1, 120: 0.1})
    chex.assert_trees_all_close(values, _reference(staircase), rtol=RTOL)
    chex.assert_trees_all_close(values, _reference(piecewise), rtol=RTOL)


# Near the end of a cosine, `1 + cos(pi * t / T)` cancels: float32 (ours and Optax's alike) is
# accurate to ~1e-7 of the peak value there, not relative to the tiny value itself.
COSINE_ATOL = 2.5e-7 * 0.2


def _exact_cosine(peak, alpha, warmup_steps, num_steps=NUM_STEPS, steps=STEPS):
    t = np.minimum(steps, num_steps).astype(np.float64)
    warmup = peak * t / max(warmup_steps, 1)
    progress = (t - warmup_steps) / (num_steps - warmup_steps)
    cosine = peak * (alpha + (1 - alpha) * 0.5 * (1 + np.cos(np.pi * progress)))
    return np.where(t < warmup_steps, warmup, cosine)


@pytest.mark.parametrize("alpha", [None, 0.1])
def test_cosine_schedule_matches_optax(alpha):
    dynamic = {"learning_rate": 0.2} | ({} if alpha is None else {"alpha": alpha})
    values = _traced_schedule({"schedule": "cosine"}, dynamic)
    reference = optax.cosine_decay_schedule(0.2, decay_steps=NUM_STEPS, alpha=alpha or 0.0)
    chex.assert_trees_all_close(values, _reference(reference), rtol=RTOL, atol=COSINE_ATOL)
    expected = _exact_cosine(0.2, alpha or 0.0, 0)
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=COSINE_ATOL)
    np.testing.assert_allclose(values[NUM_STEPS:], 0.2 * (alpha or 0.0), atol=COSINE_ATOL)


@pytest.mark.parametrize("warmup_steps", [0, 1, 10, 99])
def test_warmup_cosine_schedule_matches_optax(warmup_steps):
    values = _traced_schedule(
        {"schedule": "warmup_cosine", "warmup_steps": warmup_steps},
        {"learning_rate": 0.2, "alpha": 0.05},
    )
    reference = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=0.2,
        warmup_steps=warmup_steps,
        decay_steps=NUM_STEPS,
        end_value=0.05 * 0.2,
    )
    chex.assert_trees_all_close(values, _reference(reference), rtol=RTOL, atol=COSINE_ATOL)
    expected = _exact_cosine(0.2, 0.05, warmup_steps)
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=COSINE_ATOL)
    np.testing.assert_allclose(values[warmup_steps], 0.2, rtol=RTOL)
    np.testing.assert_allclose(values[NUM_STEPS:], 0.01, rtol=RTOL)


def test_schedule_pins_float32_for_low_precision_values():
    schedule = optim.make_schedule(
        {"schedule": "inverse_time", "learning_rate": jnp.bfloat16(0.1), "lr_decay": 0.01},
        NUM_STEPS,
    )
    assert schedule(5).dtype == jnp.float32
    assert schedule(jnp.arange(3)).dtype == jnp.float32


# --------------------------------------------------------------------------- optimizers

# Values per member of a population of two; the references use the same values as floats.
POPULATION = {
    "learning_rate": (0.05, 0.01),
    "momentum": (0.9, 0.5),
    "b1": (0.9, 0.8),
    "b2": (0.999, 0.99),
    "eps": (1e-8, 1e-3),
    "weight_decay": (1e-2, 1e-1),
}


def _reference_optimizer(name, hp):
    lr = hp["learning_rate"]
    if name == "sgd":
        return optax.sgd(lr, momentum=hp.get("momentum"), nesterov=hp.get("nesterov", False))
    if name == "momentum":
        return optax.sgd(lr, momentum=hp["momentum"])
    if name == "nesterov":
        return optax.sgd(lr, momentum=hp["momentum"], nesterov=True)
    if name == "adam":
        return optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    if name == "adamw":
        return optax.adamw(
            lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"]
        )
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=hp["b2"], eps=hp["eps"])
    return optax.adagrad(lr, eps=hp["eps"])


# Plain numpy constants: safe to build inside or outside jit, and no eager dispatch per test.
_PARAMS = {
    "w": np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32),
    "b": np.random.default_rng(1).normal(size=(2,)).astype(np.float32),
}


def _init_params(dtype=jnp.float32):
    return {name: jnp.asarray(value, dtype) for name, value in _PARAMS.items()}


def _loss(params):
    # A quadratic with a linear term: the gradient changes with the parameters at every step.
    return sum(
        jnp.sum(0.5 * 1.5 * p.astype(jnp.float32) ** 2 - 0.3 * p) for p in jax.tree.leaves(params)
    )


def _run(optimizer, params, num_updates=5):
    """Applies `num_updates` steps; returns the stacked updates and the final parameters."""
    state = optimizer.init(params)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(_loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), updates

    (params, _), updates = jax.lax.scan(step, (params, state), length=num_updates)
    return updates, params


def _traced_population_updates(static, names):
    @jax.jit
    @jax.vmap
    def train(dynamic):
        return _run(optim.make_optimizer({**static, **dynamic}, NUM_STEPS), _init_params())

    return train({name: jnp.asarray(POPULATION[name], jnp.float32) for name in names})


def _member(tree, member):
    return jax.tree.map(lambda x: x[member], tree)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_traced_optimizer_matches_optax(name):
    # sgd reads momentum (dynamic, as optax.sgd(lr, momentum)) and nesterov (static).
    names = ("learning_rate", *optim.OPTIMIZER_HPARAMS[name])
    names = tuple(n for n in names if n not in optim.STATIC_HPARAMS)
    if name != "adamw":
        names = tuple(n for n in names if n != "weight_decay")  # checked separately below
    updates, params = _traced_population_updates({"optimizer": name}, names)

    @jax.jit
    def references():
        # Optax built from concrete (not traced) float32 scalars, one optimizer per member.
        return [
            _run(
                _reference_optimizer(name, {n: jnp.float32(POPULATION[n][m]) for n in names}),
                _init_params(),
            )
            for m in range(2)
        ]

    for member, (ref_updates, ref_params) in enumerate(references()):
        chex.assert_trees_all_close(_member(updates, member), ref_updates, rtol=RTOL, atol=1e-8)
        chex.assert_trees_all_close(_member(params, member), ref_params, rtol=RTOL, atol=1e-8)

    # Optax built from Python floats differs by float32 rounding only: it computes `1 - b2` in
    # double precision in Python but `b2 ** t` in float32, so Adam's bias correction no longer
    # cancels exactly (~1e-5 relative); with float32 values both sides are float32.
    ref_updates, _ = _run(
        _reference_optimizer(name, {n: POPULATION[n][0] for n in names}), _init_params()
    )
    chex.assert_trees_all_close(_member(updates, 0), ref_updates, rtol=1e-4, atol=1e-6)


def test_defaults_are_optax_defaults_where_the_contract_agrees():
    # Absent b1, b2, eps take HPARAM_DEFAULTS, which are optax.adam's own defaults.
    updates, _ = _traced_population_updates({"optimizer": "adam"}, ("learning_rate",))
    defaults = {n: jnp.float32(optim.HPARAM_DEFAULTS[n]) for n in ("b1", "b2", "eps")}
    assert optim.HPARAM_DEFAULTS["b1"] == 0.9 and optim.HPARAM_DEFAULTS["b2"] == 0.999
    assert optim.HPARAM_DEFAULTS["eps"] == 1e-8
    ref_updates, _ = _run(optax.adam(jnp.float32(0.05), **defaults), _init_params())
    # jaxtune's Adam multiplies by 1 / (1 - b ** t) where Optax divides by 1 - b ** t (so that
    # every device layout compiles the same arithmetic): one more float32 rounding per step,
    # measured 1.2e-6 relative after NUM_STEPS steps.
    chex.assert_trees_all_close(_member(updates, 0), ref_updates, rtol=2 * RTOL)


def test_adam_with_weight_decay_and_schedule_is_optax_adamw():
    static = {"optimizer": "adam", "schedule": "warmup_cosine", "warmup_steps": 2}
    population = {"learning_rate": (0.05, 0.01), "weight_decay": (1e-2, 1e-1), "alpha": (0.1, 0.0)}

    @jax.jit
    @jax.vmap
    def train(dynamic):
        return _run(optim.make_optimizer({**static, **dynamic}, NUM_STEPS), _init_params())[0]

    updates = train({n: jnp.asarray(v, jnp.float32) for n, v in population.items()})
    for member in range(2):
        lr, wd, alpha = (jnp.float32(population[n][member]) for n in population)
        # jaxtune's schedule (checked against Optax's above) with concrete values: Optax's
        # own warmup is computed as `(0 - lr) * (1 - t / W) + lr`, which cancels badly.
        schedule = optim.make_schedule({**static, "learning_rate": lr, "alpha": alpha}, NUM_STEPS)
        b1, b2, eps = jnp.float32(0.9), jnp.float32(0.999), jnp.float32(1e-8)
        reference = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd)
        ref_updates, _ = _run(reference, _init_params())
        chex.assert_trees_all_close(_member(updates, member), ref_updates, rtol=RTOL, atol=1e-8)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_traced_momentum_is_optax_sgd_and_compiles_once(nesterov):
    # "optimizer": "sgd" with a momentum is optax.sgd(learning_rate, momentum, nesterov), the
    # momentum a traced value: a sweep over momenta (0 included) compiles once.
    static = {"optimizer": "sgd", "nesterov": nesterov}
    chex.clear_trace_counter()

    @jax.jit
    @jax.vmap
    @chex.assert_max_traces(n=1)
    def train(momentum):
        return _run(optim.make_optimizer({**static, "learning_rate": 0.05, "momentum": momentum},
                                         NUM_STEPS), _init_params())

    momenta = (0.0, 0.5, 0.9, 0.99)
    updates, params = train(jnp.asarray(momenta, jnp.float32))
    train(jnp.asarray((0.1, 0.2, 0.3, 0.4), jnp.float32))  # new values: no new trace
    for member, momentum in enumerate(momenta):
        reference = optax.sgd(jnp.float32(0.05), momentum=jnp.float32(momentum),
                              nesterov=nesterov)
        ref_updates, ref_params = jax.jit(lambda r=reference: _run(r, _init_params()))()
        # Same primitives (optax.trace, then the learning rate): float32 rounding only.
        chex.assert_trees_all_close(_member(updates, member), ref_updates, rtol=RTOL, atol=1e-8)
        chex.assert_trees_all_close(_member(params, member), ref_params, rtol=RTOL, atol=1e-8)
    # A momentum of 0 and no momentum at all are both plain SGD: the same updates, bit for bit.
    plain, _ = jax.jit(lambda: _run(optim.make_optimizer({"learning_rate": 0.05}, NUM_STEPS),
                                    _init_params()))()
    chex.assert_trees_all_equal(_member(updates, 0), plain)
    ref_plain, _ = jax.jit(lambda: _run(optax.sgd(jnp.float32(0.05)), _init_params()))()
    chex.assert_trees_all_close(plain, ref_plain, rtol=RTOL, atol=1e-8)


def test_sgd_weight_decay_is_decoupled_before_learning_rate():
    params = _init_params()
    grads = jax.grad(_loss)(params)
    optimizer = optim.make_optimizer(
        {"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 0.01}, NUM_STEPS
    )
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    expected = jax.tree.map(lambda g, p: -0.1 * (g + 0.01 * p), grads, params)
    chex.assert_trees_all_close(updates, expected, rtol=RTOL)


def test_momentum_weight_decay_is_added_after_the_trace():
    params = _init_params()
    grads = jax.grad(_loss)(params)
    hp = {"optimizer": "momentum", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    optimizer = optim.make_optimizer(hp, NUM_STEPS)
    update = jax.jit(optimizer.update)
    _, state = update(grads, optimizer.init(params), params)
    updates, _ = update(grads, state, params)
    # Second step: trace = g + 0.9 * g; decay is not fed into the momentum buffer.
    expected = jax.tree.map(lambda g, p: -0.1 * (1.9 * g + 0.01 * p), grads, params)
    chex.assert_trees_all_close(updates, expected, rtol=RTOL)


def test_sweep_over_learning_rates_compiles_once():
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def train(learning_rate):
        hp = {"optimizer": "adam", "schedule": "cosine", "learning_rate": learning_rate}
        return _run(optim.make_optimizer(hp, NUM_STEPS), _init_params())[1]

    sweep = jax.jit(jax.vmap(train))
    first = sweep(jnp.logspace(-4, -1, 8, dtype=jnp.float32))
    second = sweep(jnp.linspace(0.001, 0.3, 8, dtype=jnp.float32))
    chex.assert_shape(first["w"], (8, 3, 2))
    assert not np.allclose(first["w"], second["w"])


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_bf16_params_get_float32_hyperparameters(name):
    params = _init_params(jnp.bfloat16)

    @jax.jit
    def train(learning_rate):
        optimizer = optim.make_optimizer(
            {"optimizer": name, "learning_rate": learning_rate, "weight_decay": 1e-3}, NUM_STEPS
        )
        state = optimizer.init(params)
        updates, new_state = optimizer.update(jax.grad(_loss)(params), state, params)
        chex.assert_trees_all_equal_dtypes(new_state, state)  # a valid lax.scan carry
        return updates, _run(optimizer, params)[1]

    updates, final = train(jnp.float32(0.0011))
    chex.assert_trees_all_equal_dtypes(updates, params)
    chex.assert_trees_all_equal_dtypes(final, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((updates, final)))


def test_bf16_sgd_learning_rate_is_not_rounded_to_bf16():
    params = _init_params(jnp.bfloat16)
    grads = jax.grad(_loss)(params)
    optimizer = optim.make_optimizer({"learning_rate": jnp.float32(0.0011)}, NUM_STEPS)
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    # The product is formed in float32 and rounded once to bf16.
    expected = jax.tree.map(
        lambda g: (-jnp.float32(0.0011) * g.astype(jnp.float32)).astype(jnp.bfloat16), grads
    )
    chex.assert_trees_all_equal(updates, expected)


# --------------------------------------------------------------------------- validation


def test_validate_accepts_a_complete_group_and_returns_names_read():
    read = optim.validate_optimizer(
        {"optimizer": "adamw", "schedule": "warmup_cosine", "warmup_steps": 10, "width": 64},
        ["learning_rate", "weight_decay", "dropout", "l2"],
        NUM_STEPS,
    )
    assert set(read) == {
        "learning_rate",
        "warmup_steps",
        "alpha",
        "b1",
        "b2",
        "eps",
        "weight_decay",
    }
    # Defaults: sgd with a constant schedule; a Fixed (static) learning rate is fine.
    assert optim.validate_optimizer({"learning_rate": 0.1}, [], 10) == (
        "learning_rate",
        "momentum",
        "nesterov",
        "weight_decay",
    )


def test_optimizer_hparams_cover_every_choice():
    assert set(optim.OPTIMIZER_HPARAMS) == set(optim.OPTIMIZERS) | set(optim.SCHEDULES)
    known = (
        set(optim.STATIC_HPARAMS)
        | set(optim.HPARAM_DEFAULTS)
        | {
            "learning_rate",
            "lr_decay",
            "decay_rate",
        }
    )
    for names in optim.OPTIMIZER_HPARAMS.values():
        assert set(names) <= known


@pytest.mark.parametrize(
    ("static", "dynamic", "match"),
    [
        ({"optimizer": "adm"}, ["learning_rate"], r"optimizer: unknown value 'adm'.*'sgd'"),
        ({"optimizer": 3}, ["learning_rate"], r"optimizer: unknown value 3.*'adagrad'"),
        ({"schedule": "linear"}, ["learning_rate"], r"schedule: unknown value.*'warmup_cosine'"),
        ({}, ["lr"], r"learning_rate: missing.*Did you mean to name 'lr'"),
        ({}, ["learning_rat"], r"learning_rate: missing.*'learning_rat'"),
        ({"schedule": "inverse_time"}, ["learning_rate"], r"lr_decay: missing.*inverse_time"),
        (
            {"schedule": "exponential", "transition_steps": 10},
            ["learning_rate"],
            r"decay_rate: missing.*exponential",
        ),
        (
            {"schedule": "exponential"},
            ["learning_rate", "decay_rate"],
            r"transition_steps: missing",
        ),
        ({"schedule": "step"}, ["learning_rate", "decay_rate"], r"step_size: missing"),
        ({"schedule": "warmup_cosine"}, ["learning_rate"], r"warmup_steps: missing"),
        (
            {"schedule": "warmup_cosine", "warmup_steps": 100},
            ["learning_rate"],
            r"warmup_steps: got 100.*\[0, 100\)",
        ),
        (
            {"schedule": "warmup_cosine", "warmup_steps": -1},
            ["learning_rate"],
            r"warmup_steps: got -1",
        ),
        (
            {"schedule": "warmup_cosine", "warmup_steps": 5.0},
            ["learning_rate"],
            r"warmup_steps: got 5.0.*int",
        ),
        ({"step_size": 0}, ["learning_rate"], r"step_size: got 0.*positive int"),
        ({"transition_steps": -3}, ["learning_rate"], r"transition_steps: got -3"),
        ({"transition_steps": 2.5}, ["learning_rate"], r"transition_steps: got 2.5"),
        ({}, ["learning_rate", "optimizer"], r"optimizer: must be static"),
        ({}, ["learning_rate", "warmup_steps"], r"warmup_steps: must be static"),
        ({"learning_rate": math.nan}, [], r"learning_rate: got nan.*finite"),
        ({"learning_rate": "0.1"}, [], r"learning_rate: got '0.1'"),
        ({"nesterov": True}, ["learning_rate"], r"nesterov: given with optimizer 'sgd' but "
                                                r"without momentum"),
        ({"nesterov": 1}, ["learning_rate", "momentum"], r"nesterov: got 1.*True or False"),
        ({}, ["learning_rate", "nesterov"], r"nesterov: must be static"),
    ],
)
def test_validate_optimizer_errors(static, dynamic, match):
    with pytest.raises(ValueError, match=match):
        optim.validate_optimizer(static, dynamic, NUM_STEPS)


def test_validate_rejects_bad_num_steps():
    with pytest.raises(ValueError, match="num_steps"):
        optim.validate_optimizer({"learning_rate": 0.1}, [], 0)


def test_make_optimizer_validates_and_rejects_traced_static_names():
    with pytest.raises(ValueError, match="optimizer: unknown value"):
        optim.make_optimizer({"optimizer": "lion", "learning_rate": 0.1}, NUM_STEPS)
    with pytest.raises(ValueError, match="learning_rate: missing"):
        optim.make_schedule({"schedule": "cosine"}, NUM_STEPS)

    def build(warmup_steps):
        hp = {"schedule": "warmup_cosine", "warmup_steps": warmup_steps, "learning_rate": 0.1}
        return optim.make_schedule(hp, NUM_STEPS)(0)

    with pytest.raises(ValueError, match="warmup_steps: got a traced value"):
        jax.jit(build)(5)


# --------------------------------------------------------------------------- a task's own optimizer


def _clipped_adamw(hp):
    return optax.chain(optax.clip_by_global_norm(hp["clip"]),
                       optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"]))


def _lion(hp):
    return optax.lion(hp["learning_rate"], weight_decay=hp["weight_decay"])


def _injected(hp):
    return optax.inject_hyperparams(optax.sgd)(learning_rate=hp["learning_rate"], momentum=0.9)


#: Concrete-value twins of the factories above, for the plain loops.
_CONCRETE = {"clipped_adamw": _clipped_adamw, "lion": _lion, "injected": _injected}


def _factory_loop(task, split, config, key, num_steps):
    """A plain loop of Optax's own transformation on concrete values (full batch)."""
    hp = {k: v for k, v in config.items() if k != "optimizer"}
    params = task.init(jax.random.fold_in(key, 0), hp)
    transformation = _CONCRETE[config["optimizer"]](hp)
    state = transformation.init(params)
    batch = {"x": jnp.asarray(split.x_train), "y": jnp.asarray(split.y_train)}
    for _ in range(num_steps):
        grads = jax.grad(lambda p: task.loss(p, batch, None, hp)[0])(params)
        updates, state = transformation.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_a_task_optimizer_factory_compiles_once_per_family_and_equals_optax():
    import jaxtune as jt
    from jaxtune import engine

    split = jt.train_valid_test_split(jt.make_linear(num_samples=64, seed=1), seed=0)
    task = jt.regression_task("linear", input_shape=(1,), optimizer={
        "clipped_adamw": _clipped_adamw, "lion": _lion, "injected": _injected})
    grid = [{"optimizer": "clipped_adamw", "clip": c, "learning_rate": lr, "weight_decay": wd}
            for c in (0.1, 1.0) for lr in (0.01, 0.1) for wd in (0.0, 0.01)]
    others = [{"optimizer": "lion", "clip": 1.0, "learning_rate": 0.03, "weight_decay": 0.01},
              {"optimizer": "injected", "clip": 1.0, "learning_rate": 0.03, "weight_decay": 0.0}]
    configs = grid + others
    results, params = jt.train(task, configs, split, num_steps=6, steps_per_segment=6,
                               batch_size=None, evaluate_test=False, return_params=True)
    # One segment program per optimizer family: the 2x2x2 grid of clip x lr x wd is one.
    assert results.metadata["num_static_groups"] == 3
    assert results.metadata["num_segment_compilations"] <= 3
    keys = engine.member_keys(0, [0] * len(configs), configs, [None] * len(configs))
    for i in (0, 5, 7, 8, 9):  # three corners of the grid, lion, inject_hyperparams
        config, member, key = configs[i], params[i], keys[i]
        expected = _factory_loop(task, split, config, key, 6)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), member,
            expected)


def test_names_a_task_optimizer_reads_are_found_and_unknown_names_refused():
    import jaxtune as jt

    split = jt.train_valid_test_split(jt.make_linear(num_samples=32, seed=1), seed=0)
    task = jt.regression_task("linear", input_shape=(1,), optimizer=_clipped_adamw)
    base = {"clip": 1.0, "learning_rate": 0.1, "weight_decay": 0.0}
    with pytest.raises(ValueError, match=r"\['b1'\]: nothing reads"):
        jt.train(task, [{**base, "b1": 0.9}], split, num_steps=2,
                 batch_size=None)
    with pytest.raises(KeyError, match="clip"):
        jt.train(task, [{"learning_rate": 0.1, "weight_decay": 0.0}], split, num_steps=2,
                 batch_size=None)
    mapped = jt.regression_task("linear", input_shape=(1,), optimizer={
        **optimizers.BUILTIN_OPTIMIZERS, "clipped_adamw": _clipped_adamw})
    with pytest.raises(ValueError, match="optimizer: got 'lamb'"):
        jt.train(mapped, [{**base, "optimizer": "lamb"}], split, num_steps=2, batch_size=None)
    with pytest.raises(TypeError, match=r"Task.optimizer must be None"):
        jt.regression_task("linear", input_shape=(1,), optimizer="adamw")


def test_builtin_optimizers_as_factories_match_make_optimizer():
    params = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    grads = {"w": jnp.asarray([0.1, -0.3, 0.2])}
    for name in optim.OPTIMIZERS:
        hp = {"learning_rate": 0.1, "weight_decay": 0.01}
        built = optimizers.BUILTIN_OPTIMIZERS[name](hp)
        reference = optim.make_optimizer({**hp, "optimizer": name}, 2**31 - 1)
        state, ref_state = built.init(params), reference.init(params)
        for _ in range(3):
            updates, state = built.update(grads, state, params)
            ref_updates, ref_state = reference.update(grads, ref_state, params)
            np.testing.assert_array_equal(updates["w"], ref_updates["w"])
    with pytest.raises(ValueError, match="the built-in optimizers are"):
        optimizers.optimizer_factory("lamb")
