"""The spray-bottle demonstration's grip survives the transfer to a differently shaped bottle:
the index alone on the trigger's front face (the only functional finger the validator checks),
middle and ring wrapping the neck against the thumb."""
from __future__ import annotations

import numpy as np

from grasp_data.demonstrations import load_demonstration
from grasp_data.objects import generate
from grasp_data.transfer import transfer_contacts
from grasp_data.validation import designated_fingers


def test_spray_bottle_index_pulls_the_trigger_while_the_hand_wraps_the_neck():
    demo = load_demonstration("spray_bottle")
    assert designated_fingers(demo) == {"index": "trigger"}
    ref = demo.reference_instance()
    target = generate("spray_bottle", 7)
    assert not np.allclose(target.mesh.extents, ref.mesh.extents, atol=5e-3)   # a different bottle
    result = transfer_contacts(demo, target, reference=ref, seed=7)
    index, thumb = result.best("index"), result.best("thumb")
    assert index.region == "trigger" and index.normal @ np.array([1.0, 0.0, 0.0]) > 0.7   # front face
    assert thumb.region == "neck"
    for finger in ("middle", "ring"):
        c = result.best(finger)
        assert c.region == "neck" and c.normal @ thumb.normal < -0.5, (finger, c.normal, thumb.normal)
