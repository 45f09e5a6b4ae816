"""The ``figures`` scene family: articulated bodies that walk, dance and wave.

A torso, a head with hair, two arms (upper arm, forearm, hand) and two legs (thigh, shin,
foot) joined at shoulders, elbows, wrists, hips, knees and ankles, on a textured wall and
floor. Motion: joint angles from periodic gaits (walking, dancing, waving), translation,
bobbing, lean and zoom. One arm and one leg are in front of the torso and the other two
behind it (which side is in front is part of the motion), so limbs hide the torso, each
other, and themselves as they cross.

Joint angles are in radians: 0 points a limb straight down, positive turns it towards the
image's right. The torso leans by ``lean``; upper arms are measured from the torso's axis,
forearms from the upper arm, shins from the thigh, thighs from the vertical.

Keypoints (``K = 14``); ``_l``/``_r`` name the limb attached on the image's left and
right of the torso when the figure stands straight:

====  ===========  ===================  ===========================
 k    name         where                parts that show it
====  ===========  ===================  ===========================
 0    head         centre of the head   head, hair
 1    neck         top of the torso     torso, neck
 2    shoulder_l   left shoulder        torso, upper_arm_l
 3    shoulder_r   right shoulder       torso, upper_arm_r
 4    elbow_l      left elbow           upper_arm_l, forearm_l
 5    elbow_r      right elbow          upper_arm_r, forearm_r
 6    wrist_l      left wrist           forearm_l, hand_l
 7    wrist_r      right wrist          forearm_r, hand_r
 8    hip_l        left hip             torso, thigh_l
 9    hip_r        right hip            torso, thigh_r
 10   knee_l       left knee            thigh_l, shin_l
 11   knee_r       right knee           thigh_r, shin_r
 12   ankle_l      left ankle           shin_l, foot_l
 13   ankle_r      right ankle          shin_r, foot_r
====  ===========  ===================  ===========================
"""

import numpy as np

from kmt.data.render import (F32, Box, Capsule, Ellipse, HalfPlane, Intersect, Layer, Paint,
                             channel, oscillate, random_colour, sample_texture)
from kmt.data.faces import HAIR_COLOURS, SKIN_TONES

NAME = "figures"
KEYPOINT_NAMES = ("head", "neck", "shoulder_l", "shoulder_r", "elbow_l", "elbow_r", "wrist_l",
                  "wrist_r", "hip_l", "hip_r", "knee_l", "knee_r", "ankle_l", "ankle_r")
PART_NAMES = ("background", "torso", "neck", "head", "hair", "upper_arm_l", "forearm_l", "hand_l",
              "upper_arm_r", "forearm_r", "hand_r", "thigh_l", "shin_l", "foot_l", "thigh_r", "shin_r",
              "foot_r")
_OWNER = (("head", "hair"), ("torso", "neck"), ("torso", "upper_arm_l"), ("torso", "upper_arm_r"),
          ("upper_arm_l", "forearm_l"), ("upper_arm_r", "forearm_r"), ("forearm_l", "hand_l"),
          ("forearm_r", "hand_r"), ("torso", "thigh_l"), ("torso", "thigh_r"), ("thigh_l", "shin_l"),
          ("thigh_r", "shin_r"), ("shin_l", "foot_l"), ("shin_r", "foot_r"))
OWNERS = np.array([[p in o for p in PART_NAMES] for o in _OWNER])
_L = {p: i for i, p in enumerate(PART_NAMES)}
_CHANNELS = ("px", "py", "scale", "lean", "tilt", "sh_l", "sh_r", "el_l", "el_r", "hip_l", "hip_r",
             "kn_l", "kn_r")
KINDS = ("walk", "dance", "wave")


def _f(x):
    return np.asarray(x, F32)


def sample_identity(rng):
    """Appearance and build of one figure, as a nested dict of float32 arrays.

    ``build`` (lengths in world units at scale 1, where the frame is 2 units high) decides
    where keypoints fall; everything else is appearance only.
    """
    build = {
        "torso": rng.uniform(0.4, 0.5), "shoulder_w": rng.uniform(0.3, 0.42), "hip_w": rng.uniform(0.2, 0.28),
        "neck": rng.uniform(0.05, 0.08), "head_r": rng.uniform(0.11, 0.14), "head_ratio": rng.uniform(1.1, 1.25),
        "upper_arm": rng.uniform(0.24, 0.3), "forearm": rng.uniform(0.22, 0.28), "arm_w": rng.uniform(0.04, 0.055),
        "thigh": rng.uniform(0.32, 0.38), "shin": rng.uniform(0.3, 0.36), "leg_w": rng.uniform(0.05, 0.07),
        "foot": rng.uniform(0.08, 0.11), "hairline": rng.uniform(-0.5, -0.2),
        "hair_volume": rng.uniform(1.05, 1.15),
    }
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.94, 1.06, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] if rng.uniform() < 0.8 else random_colour(rng, v=(0.2, 0.8))
    shirt, trousers = random_colour(rng), random_colour(rng, v=(0.15, 0.8))
    wall, floor = random_colour(rng, s=(0.05, 0.5)), random_colour(rng, s=(0.1, 0.6), v=(0.2, 0.7))
    return {
        "skin": _f(np.clip(skin, 0, 1)), "hair": _f(hair), "hair2": _f(np.clip(hair * 1.4 + 0.05, 0, 1)),
        "hair_tex": sample_texture(rng, "stripes", (50.0, 90.0), gain=1.2),
        "shirt": shirt, "shirt2": _f(np.clip(shirt * rng.uniform(0.4, 1.6, 3), 0, 1)),
        "shirt_tex": sample_texture(rng, None, (20.0, 45.0)),
        "trousers": trousers, "trousers2": _f(np.clip(trousers * rng.uniform(0.5, 1.5, 3), 0, 1)),
        "trousers_tex": sample_texture(rng, None, (20.0, 45.0)),
        "shoes": random_colour(rng, v=(0.05, 0.5)),
        "long_sleeves": _f(rng.uniform() < 0.5), "shorts": _f(rng.uniform() < 0.3),
        "bg": wall, "bg2": _f(np.clip(wall * rng.uniform(0.6, 1.4, 3), 0, 1)),
        "bg_tex": sample_texture(rng, None, (3.0, 12.0)),
        "floor": floor, "floor2": _f(np.clip(floor * rng.uniform(0.5, 1.5, 3), 0, 1)),
        "floor_tex": sample_texture(rng, None, (6.0, 16.0)), "horizon": _f(rng.uniform(0.35, 0.7)),
        "build": {k: _f(v) for k, v in build.items()},
    }


def sample_motion(rng):
    """Gait coefficients (``kind`` 0 walk, 1 dance, 2 wave) and which side is in front."""
    kind = int(rng.integers(len(KINDS)))
    facing = float(rng.choice([-1.0, 1.0]))
    c = {"px": channel(rng, (-0.2, 0.2), (0.0, 0.15), (80, 200)),
         "py": channel(rng, (0.12, 0.2), (0.0, 0.015), (10, 20)),
         "scale": channel(rng, (0.85, 1.0), (0.0, 0.04), (60, 150)),
         "lean": channel(rng, (-0.05, 0.05), (0.0, 0.05), (20, 60)),
         "tilt": channel(rng, (-0.1, 0.1), (0.0, 0.1), (20, 60))}
    if kind == 0:
        period = rng.uniform(16, 30)
        w, ph = 2 * np.pi / period, rng.uniform(0, 2 * np.pi)
        a, b, k = rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.4)
        for i, side in enumerate("lr"):
            shift = np.pi * i
            c["hip_" + side] = [0.0, a, w, ph + shift, 0.0, w, 0.0]
            c["kn_" + side] = [-facing * k, -facing * k, w, ph + shift + np.pi / 2, 0.0, w, 0.0]
            c["sh_" + side] = [0.0, b, w, ph + shift + np.pi, 0.0, w, 0.0]
            c["el_" + side] = [facing * rng.uniform(0.2, 0.5), 0.15 * facing, w, ph + shift, 0.0, w, 0.0]
        c["lean"][0] += facing * 0.05
    elif kind == 1:
        c["px"] = channel(rng, (-0.2, 0.2), (0.05, 0.15), (30, 80))
        c["py"] = channel(rng, (0.12, 0.2), (0.0, 0.05), (10, 30))
        c["lean"] = channel(rng, (-0.05, 0.05), (0.0, 0.15), (20, 60))
        c["tilt"] = channel(rng, (-0.1, 0.1), (0.0, 0.25), (15, 40))
        for sign, side in ((-1.0, "l"), (1.0, "r")):
            c["sh_" + side] = _outward(channel(rng, (0.0, 2.2), (0.3, 1.0), (10, 40)), sign)
            c["el_" + side] = channel(rng, (-0.5, 0.5), (0.0, 1.2), (10, 40))
            c["hip_" + side] = _outward(channel(rng, (0.05, 0.25), (0.0, 0.15), (15, 40)), sign)
            c["kn_" + side] = _outward(channel(rng, (0.0, 0.3), (0.0, 0.25), (15, 40)), -sign)
    else:
        wave = rng.choice(["l", "r"])
        for sign, side in ((-1.0, "l"), (1.0, "r")):
            if side == wave:
                c["sh_" + side] = _outward(channel(rng, (2.0, 2.5), (0.0, 0.2), (20, 40)), sign)
                c["el_" + side] = _outward(channel(rng, (0.2, 0.6), (0.3, 0.6), (6, 12)), sign)
            else:  # the other arm hangs in front of or behind the torso
                c["sh_" + side] = _outward(channel(rng, (-0.45, -0.1), (0.1, 0.3), (20, 50)), sign)
                c["el_" + side] = _outward(channel(rng, (0.3, 1.2), (0.0, 0.3), (20, 50)), -sign)
            c["hip_" + side] = _outward(channel(rng, (0.03, 0.12), (0.0, 0.05), (30, 60)), sign)
            c["kn_" + side] = channel(rng, 0.0, (0.0, 0.05), (30, 60))
    coef = np.array([c[name] for name in _CHANNELS], F32)
    return {"coef": coef, "kind": _f(kind), "facing": _f(facing), "front_left": _f(rng.uniform() < 0.5)}


def _outward(row, sign):
    """A channel of angles measured away from the body, for the side whose outside is ``sign * x``."""
    return [sign * row[0], sign * row[1], row[2], row[3], sign * row[4], row[5], row[6]]


def pose(motion, t):
    """Per-frame joint angles and placement from stacked motions at frame times ``t (N,)``."""
    c = oscillate(motion["coef"], t)
    p = {name: c[:, i] for i, name in enumerate(_CHANNELS)}
    p["facing"], p["front_left"] = motion["facing"], motion["front_left"] > 0.5
    return p


def _down(phi):
    return np.sin(phi), np.cos(phi)


def scene(identity, p):
    """Layers (back to front), background paint and ``(N, K, 2)`` world keypoints."""
    b = identity["build"]
    n = p["px"].shape[0]
    zero, one = np.zeros(n, F32), np.ones(n, F32)
    s, lean = p["scale"], p["lean"]
    px, py = p["px"], p["py"]
    dx, dy = _down(lean)
    rx_, ry_ = np.cos(lean), -np.sin(lean)
    sx, sy = px - s * b["torso"] * dx, py - s * b["torso"] * dy
    kps, limbs = {"neck": (sx, sy)}, {}
    skin = identity["skin"]
    sleeve = np.where(identity["long_sleeves"][:, None] > 0.5, identity["shirt"], skin)
    sleeve2 = np.where(identity["long_sleeves"][:, None] > 0.5, identity["shirt2"], skin)
    leg = np.where(identity["shorts"][:, None] > 0.5, skin, identity["trousers"])
    leg2 = np.where(identity["shorts"][:, None] > 0.5, skin, identity["trousers2"])

    def limb(ax, ay, phi, length, radius, colour, colour2, tex):
        ddx, ddy = _down(phi)
        bx, by = ax + s * length * ddx, ay + s * length * ddy
        paint = Paint(colour, colour2, tex, (ax, ay, -phi, s))
        return (bx, by), Capsule(ax, ay, bx, by, s * radius), paint

    for sign, side in ((-1.0, "l"), (1.0, "r")):
        shx, shy = sx + sign * s * b["shoulder_w"] / 2 * rx_, sy + sign * s * b["shoulder_w"] / 2 * ry_
        phi = lean + p["sh_" + side]
        elbow, upper, up_paint = limb(shx, shy, phi, b["upper_arm"], b["arm_w"], identity["shirt"],
                                      identity["shirt2"], identity["shirt_tex"])
        phi = phi + p["el_" + side]
        wrist, fore, fore_paint = limb(*elbow, phi, b["forearm"], 0.9 * b["arm_w"], sleeve, sleeve2,
                                       identity["shirt_tex"])
        hx, hy = _down(phi)
        hand = Ellipse(wrist[0] + 0.5 * s * b["arm_w"] * hx, wrist[1] + 0.5 * s * b["arm_w"] * hy,
                       1.3 * s * b["arm_w"], 1.3 * s * b["arm_w"])
        hipx, hipy = px + sign * s * b["hip_w"] / 2 * rx_, py + sign * s * b["hip_w"] / 2 * ry_
        phi = p["hip_" + side]
        knee, thigh, thigh_paint = limb(hipx, hipy, phi, b["thigh"], b["leg_w"], identity["trousers"],
                                        identity["trousers2"], identity["trousers_tex"])
        ankle, shin, shin_paint = limb(*knee, phi + p["kn_" + side], b["shin"], 0.85 * b["leg_w"], leg, leg2,
                                       identity["trousers_tex"])
        toe = (ankle[0] + s * b["foot"] * p["facing"], ankle[1] + 0.3 * s * b["foot"])
        foot = Capsule(ankle[0], ankle[1], toe[0], toe[1], 0.7 * s * b["leg_w"])
        limbs[side] = {
            "arm": [(upper, up_paint, "upper_arm_"), (fore, fore_paint, "forearm_"),
                    (hand, Paint(skin), "hand_")],
            "leg": [(thigh, thigh_paint, "thigh_"), (shin, shin_paint, "shin_"),
                    (foot, Paint(identity["shoes"]), "foot_")]}
        kps.update({"shoulder_" + side: (shx, shy), "elbow_" + side: elbow, "wrist_" + side: wrist,
                    "hip_" + side: (hipx, hipy), "knee_" + side: knee, "ankle_" + side: ankle})

    def role(chain, front):
        """The chain's layers for the limb that is in front (or behind) in each frame."""
        fl = p["front_left"] if front else ~p["front_left"]
        out = []
        for (shape_l, paint_l, part), (shape_r, paint_r, _) in zip(limbs["l"][chain], limbs["r"][chain]):
            shape = _pick(fl, shape_l, shape_r)
            paint = _pick(fl, paint_l, paint_r)
            out.append(Layer(shape, paint, np.where(fl, _L[part + "l"], _L[part + "r"])))
        return out

    h = identity["horizon"]
    floor = Layer(Box(zero, h + 2.0, 5.0 * one, 2.0 * one),
                  Paint(identity["floor"], identity["floor2"], identity["floor_tex"], (zero, h, zero, one)), 0)
    tilt = lean + p["tilt"]
    tdx, tdy = _down(tilt)
    hr = s * b["head_r"]
    hry = hr * b["head_ratio"]
    hcx, hcy = sx - (s * b["neck"] + 0.9 * hry) * tdx, sy - (s * b["neck"] + 0.9 * hry) * tdy
    kps["head"] = (hcx, hcy)
    neck = Layer(Capsule(sx, sy, hcx, hcy, 0.45 * hr), Paint(skin * 0.85), _L["neck"])
    torso = Layer(Box((px + sx) / 2, (py + sy) / 2, s * (np.maximum(b["shoulder_w"], b["hip_w"]) / 2 + 0.03),
                      s * (b["torso"] / 2 + 0.05), -lean, 0.06 * s),
                  Paint(identity["shirt"], identity["shirt2"], identity["shirt_tex"], (px, py, -lean, s)),
                  _L["torso"])
    head = Layer(Ellipse(hcx, hcy, hr, hry, -tilt), Paint(skin, shade=0.25 * one, shade_width=0.5 * hr),
                 _L["head"])
    lx, ly = hcx + b["hairline"] * hry * tdx, hcy + b["hairline"] * hry * tdy
    cap = Intersect(Ellipse(hcx, hcy, hr * b["hair_volume"], hry * b["hair_volume"], -tilt),
                    HalfPlane(lx, ly, np.pi / 2 - tilt))
    hair = Layer(cap, Paint(identity["hair"], identity["hair2"], identity["hair_tex"], (hcx, hcy, -tilt, s)),
                 _L["hair"])
    layers = ([floor] + role("arm", False) + role("leg", False) + role("leg", True)
              + [neck, torso, head, hair] + role("arm", True))
    background = Paint(identity["bg"], identity["bg2"], identity["bg_tex"], (zero, zero, zero, one))
    keypoints = np.stack([np.stack(kps[k], -1) for k in KEYPOINT_NAMES], 1).astype(F32)
    return layers, background, keypoints


def _pick(mask, a, b):
    """Per frame, the fields of ``a`` where ``mask`` else those of ``b`` (shapes and paints alike)."""
    out = object.__new__(type(a))
    for key, va in vars(a).items():
        vb = vars(b)[key]
        if isinstance(va, np.ndarray) and va.ndim >= 1:
            m = mask.reshape(mask.shape + (1,) * (va.ndim - 1))
            setattr(out, key, np.where(m, va, vb))
        elif isinstance(va, dict):
            setattr(out, key, {k: np.where(mask.reshape(mask.shape + (1,) * (v.ndim - 1)), v, vb[k])
                               for k, v in va.items()})
        elif isinstance(va, tuple):
            setattr(out, key, tuple(np.where(mask, x, y) for x, y in zip(va, vb)))
        else:
            setattr(out, key, va)
    return out
