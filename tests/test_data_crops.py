import numpy as np
import pytest

from dawnchorus.data import Box
from dawnchorus.data.crops import ClassIndex, CropSampler, crop_start_range, crop_target

NAN = float("nan")
CLASSES = ClassIndex([(0, None), (1, None), (2, 1), (2, 4)])


def tp(species, t0, t1, songtype=1, rec="r"):
    return Box(rec, species, songtype, t0, 100.0, t1, 2000.0, 1)


def fp(species, t0, t1, rec="r"):
    return Box(rec, species, 1, t0, 100.0, t1, 2000.0, 0)


def test_tp_and_fp_in_one_crop_are_both_known_others_unknown():
    target = crop_target(boxes=[tp(0, 1.0, 2.0), fp(1, 1.5, 2.5)], t_start_s=0.5, crop_s=3.0, classes=CLASSES, min_inside=0.6)
    np.testing.assert_array_equal(target, [1, 0, NAN, NAN])


def test_songtype_classes_and_tp_beats_fp():
    target = crop_target(boxes=[tp(2, 1.0, 2.0, songtype=4), fp(2, 1.0, 2.0), tp(0, 1, 2), fp(0, 1.2, 1.8)],
                         t_start_s=0.0, crop_s=3.0, classes=CLASSES, min_inside=0.6)
    np.testing.assert_array_equal(target, [1, NAN, 0, 1])


def test_grazing_boxes_leave_classes_unknown():
    target = crop_target(boxes=[tp(0, 2.8, 4.0), fp(1, 2.9, 3.5)], t_start_s=0.0, crop_s=3.0, classes=CLASSES, min_inside=0.6)
    assert np.isnan(target).all()


def test_naive_and_tp_only_label_modes():
    boxes = [tp(0, 1.0, 2.0), fp(1, 1.0, 2.0)]
    naive = crop_target(boxes=boxes, t_start_s=0.0, crop_s=3.0, classes=CLASSES, min_inside=0.6, label_mode="naive")
    tp_only = crop_target(boxes=boxes, t_start_s=0.0, crop_s=3.0, classes=CLASSES, min_inside=0.6, label_mode="tp_only")
    np.testing.assert_array_equal(naive, [1, 0, 0, 0])
    np.testing.assert_array_equal(tp_only, [1, 0, 0, 0])


def test_start_range_keeps_most_of_the_box_inside():
    box = tp(0, 10.0, 12.0)
    low, high = crop_start_range(box, crop_s=5.0, duration_s=60.0, min_inside=0.6)
    assert low == pytest.approx(6.2) and high == pytest.approx(10.8)
    edge = crop_start_range(tp(0, 0.0, 1.0), crop_s=5.0, duration_s=60.0, min_inside=0.6)
    assert edge[0] == 0.0
    assert crop_start_range(tp(0, 58.0, 60.0), crop_s=5.0, duration_s=60.0, min_inside=0.6)[1] == 55.0


def test_sampler_balances_species_and_tp_fp_and_is_deterministic():
    boxes = [tp(0, 1, 2, rec=f"a{i}") for i in range(30)] + [tp(1, 1, 2, rec="b")]
    boxes += [fp(0, 5, 6, rec=f"a{i}") for i in range(30)] + [fp(1, 5, 6, rec="b")]
    durations = {b.recording_id: 60.0 for b in boxes}
    sampler = CropSampler(boxes=boxes, durations_s=durations, classes=CLASSES, crop_s=3.0, min_inside=0.6, tp_fraction=0.5)
    specs = sampler.sample(2000, seed=1)
    rare = sum(s.recording_id == "b" for s in specs) / len(specs)
    assert 0.4 < rare < 0.6  # species 1 has one box but half of the draws
    positives = sum(np.nansum(s.target) > 0 for s in specs) / len(specs)
    assert 0.45 < positives < 0.55
    assert [s.t_start_s for s in sampler.sample(50, seed=1)] == [s.t_start_s for s in specs[:50]]
    for spec in specs[:200]:
        assert 0 <= spec.t_start_s <= 57.0


def test_frame_target_knows_only_the_frames_boxes_cover():
    from dawnchorus.data.crops import frame_target

    # 3 s crop starting at 1 s, 6 frames of 0.5 s (centres 1.25, 1.75, ..., 3.75)
    target = frame_target(boxes=[tp(0, 1.6, 2.4), fp(1, 3.0, 4.5), fp(0, 2.0, 2.6)], t_start_s=1.0, crop_s=3.0,
                          classes=CLASSES, n_frames=6)
    np.testing.assert_array_equal(target[0], [NAN, 1, 1, NAN, NAN, NAN])  # TP wins over the FP at 2.25 s
    np.testing.assert_array_equal(target[1], [NAN, NAN, NAN, NAN, 0, 0])
    assert np.isnan(target[2:]).all()
    assert frame_target(boxes=[tp(0, 1.6, 2.4)], t_start_s=1.0, crop_s=3.0, classes=CLASSES, n_frames=0).shape == (4, 0)


def test_soft_labels_fill_unknowns_with_lower_weight_and_hard_labels_win():
    from dawnchorus.data.crops import SoftLabels

    grid = np.zeros((12, 4), dtype=np.float32)  # 6 s at 0.5 s steps
    grid[4:6, 1] = 0.8  # teacher hears class 1 at 2.0-3.0 s
    grid[:, 0] = 0.3
    soft = SoftLabels({"r": grid, "u": grid.copy()}, step_s=0.5)
    sampler = CropSampler(boxes=[tp(0, 2.0, 2.5)], durations_s={"r": 6.0}, classes=CLASSES, crop_s=3.0, min_inside=0.6,
                          tp_fraction=1.0, label_frames=6, soft_labels=soft, pseudo_prob=0.5, pseudo_weight=0.25)
    spec = sampler.spec("r", 1.0)
    assert spec.target[0] == 1 and spec.weight[0] == 1  # the TP box overrides the teacher's 0.3
    assert spec.target[1] == pytest.approx(0.8) and spec.weight[1] == 0.25
    np.testing.assert_allclose(spec.frame_target[1], [0, 0, 0.8, 0.8, 0, 0])
    np.testing.assert_array_equal(spec.frame_weight[0], [0.25, 0.25, 1, 0.25, 0.25, 0.25])
    # Pseudo crops are drawn anywhere, from recordings without boxes too.
    drawn = {s.recording_id for s in sampler.sample(200, seed=1)}
    assert drawn == {"r", "u"}
