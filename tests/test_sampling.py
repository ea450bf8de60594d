"""Samplers and noise mixing on cases with known answers."""

from __future__ import annotations

import torch

from studio import sampling


def test_reference_eight_step_schedule():
    expected = torch.tensor([1, 0.99331, 0.98201, 0.95257, 0.88080, 0.73106, 0.5, 0.26894, 0])
    assert torch.allclose(sampling.logsnr_schedule(8), expected, atol=1e-5)


def test_low_init_noise_schedule_rises_before_falling_like_the_reference():
    schedule = sampling.logsnr_schedule(3, 0.1)
    assert schedule[0] == 0.1 and schedule[-1] == 0
    assert schedule[1] > schedule[0]


def point_mass_velocity(x0: torch.Tensor):
    """Exact velocity when all data is x0: v = (x_t - x0) / t."""
    return lambda x, t: (x - x0) / t[:, None, None]


def test_pingpong_lands_on_the_data_point():
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 8)
    out = sampling.sample_pingpong(
        point_mass_velocity(x0),
        torch.randn(2, 4, 8),
        sampling.logsnr_schedule(4),
        lambda _: torch.randn(2, 4, 8),
    )
    assert torch.allclose(out, x0, atol=1e-5)


def test_euler_follows_a_straight_flow_exactly():
    torch.manual_seed(1)
    x0, noise = torch.randn(1, 3, 5), torch.randn(1, 3, 5)
    velocity = lambda x, t: noise - x0  # noqa: E731 - the constant velocity of a straight path
    out = sampling.sample_euler(velocity, noise, sampling.linear_schedule(3))
    assert torch.allclose(out, x0, atol=1e-6)


def test_audio_to_audio_start_point():
    init, noise = torch.ones(1, 2, 3), torch.zeros(1, 2, 3)
    assert torch.allclose(sampling.noised_init(init, noise, 0.25), torch.full((1, 2, 3), 0.75))


def test_guidance_at_scale_one_is_the_conditional_velocity():
    cond, uncond = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(sampling.guided(lambda x, t: (cond, uncond), 1.0)(None, None), cond)
    expected = uncond + 3 * (cond - uncond)
    assert torch.allclose(sampling.guided(lambda x, t: (cond, uncond), 3.0)(None, None), expected)


def test_grid_guidance_adds_the_grids_own_direction_at_its_own_scale():
    cond, uncond, gridless = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    velocity = sampling.guided(lambda x, t: (cond, uncond, gridless), 3.0, grid_scale=5.0)(None, None)
    assert torch.allclose(velocity, uncond + 3 * (cond - uncond) + 5 * (cond - gridless))
    # where the grid changes nothing (a row that states no tempo), guidance is plain CFG
    same = sampling.guided(lambda x, t: (cond, uncond, cond), 3.0, grid_scale=5.0)(None, None)
    assert torch.allclose(same, uncond + 3 * (cond - uncond))


def test_guidance_runs_cover_every_step_once_in_order():
    schedule = sampling.logsnr_schedule(8)  # 1, 0.993, 0.982, 0.953, 0.881, 0.731, 0.5, 0.269, 0
    assert sampling.guidance_runs(schedule, (0.0, 1.0)) == [(0, 8, True)]
    assert sampling.guidance_runs(schedule, (0.0, 0.9)) == [(0, 4, False), (4, 8, True)]
    assert sampling.guidance_runs(schedule, (0.3, 0.9)) == [(0, 4, False), (4, 7, True), (7, 8, False)]


def test_sampling_in_runs_is_sampling_in_one_go_and_each_run_gets_its_own_velocity():
    torch.manual_seed(3)
    x, noises = torch.randn(2, 4, 8), torch.randn(9, 2, 4, 8)
    target_a, target_b = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    schedule = sampling.logsnr_schedule(8)
    a, b = point_mass_velocity(target_a), point_mass_velocity(target_b)
    whole = sampling.sample_pingpong(a, x, schedule, noises.__getitem__)
    for sampler in ("pingpong", "euler"):
        reference = whole if sampler == "pingpong" else sampling.sample_euler(a, x, schedule)
        runs = sampling.sample(sampler, x, schedule, a, a, (0.3, 0.9), noises.__getitem__)
        assert torch.equal(runs, reference)
    # Guided (a) only at the last, least noisy steps: the take lands on a's point all the same.
    late = sampling.sample("pingpong", x, schedule, a, b, (0.0, 0.6), noises.__getitem__)
    assert torch.allclose(late, target_a, atol=1e-5)
    early = sampling.sample("pingpong", x, schedule, b, a, (0.6, 1.0), noises.__getitem__)
    assert torch.allclose(early, target_a, atol=1e-5)


def test_diversity_endpoints_and_norm():
    torch.manual_seed(2)
    a, b = torch.randn(3, 64, 32), torch.randn(3, 64, 32)
    assert torch.equal(sampling.diversity_noise(a, b, 0.0), a)
    assert torch.equal(sampling.diversity_noise(a, b, 1.0), b)
    mid = sampling.diversity_noise(a, b, 0.5)
    # Slerp keeps Gaussian noise at its usual norm; a straight average would shrink it by ~0.7.
    assert torch.allclose(mid.flatten(1).norm(dim=1), a.flatten(1).norm(dim=1), rtol=0.05)
    distances = [(sampling.diversity_noise(a, b, d) - a).norm() for d in (0.1, 0.4, 0.7, 1.0)]
    assert distances == sorted(distances)


def test_slerp_of_identical_noise_is_that_noise():
    a = torch.randn(1, 8, 8)
    assert torch.allclose(sampling.slerp(a, a.clone(), 0.3), a, atol=1e-6)
