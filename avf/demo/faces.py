"""Talking faces from real photographs that installed packages ship, animated by local image warps.

Sources: ``skimage.data.astronaut()`` (Eileen Collins) and matplotlib's ``grace_hopper.jpg``. Their
landmarks were located once with the MediaPipe face detector + the legacy 468-point face-landmark model
(see ``shared/docs/env-stack.md`` §2), checked visually, and are hard-coded below in source pixels.

Per actor (:class:`Appearance`): source photo, framing (face size, aspect, roll, position, mirror),
colour (brightness, contrast, saturation, white balance, hue, skin tone) and a replaced background
(gradient plus texture, mixed with the original) outside a soft head-and-shoulders mask.

Per frame (:class:`Rig`): two backward warps with ``cv2.remap``. Stage 1 samples the actor's photo
through the framing transform plus a sum of smooth displacement fields anchored on the landmarks:
mouth corners (smile/frown), jaw drop (mouth opening), lip stretch/rounding, brow raise, inner-brow
raise, brow furrow, eyelids (widen/narrow/blink); a dark mouth cavity is composited into the opening.
Stage 2 moves the head (nod, shake, roll) with a field that fades out at a soft head mask, so the
background stays still.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from avf.demo.cues import FaceCues
from avf.demo.voice import Plan

Point = tuple[float, float]


@dataclass(frozen=True)
class SourcePhoto:
    """A shipped photograph with hand-verified landmarks (subject's right = image left)."""

    name: str
    landmarks: dict[str, Point]
    head: tuple[float, float, float, float]  # head (with hair/hat) ellipse: cx, cy, ax, ay
    body: tuple[float, float, float, float]  # shoulders ellipse: cx, cy, ax, ay
    rest: dict[str, float]  # expression offsets that bring the photo's own expression to neutral


# fmt: off
SOURCES: dict[str, SourcePhoto] = {
    "astronaut": SourcePhoto(
        "astronaut",
        {"eye_r": (204.5, 102.5), "eye_r_up": (203, 97), "eye_r_lo": (204, 104),
         "eye_l": (246.5, 104.5), "eye_l_up": (248, 100), "eye_l_lo": (246, 106),
         "brow_r_out": (188, 92), "brow_r_mid": (198, 87), "brow_r_in": (216, 89),
         "brow_l_out": (264, 96), "brow_l_mid": (254, 90), "brow_l_in": (236, 90),
         "mouth_r": (202, 139), "mouth_l": (246, 141), "lip_up_in": (223, 142), "lip_lo_in": (223, 149),
         "lip_lo_out": (223, 154), "nose": (223, 131), "chin": (221, 175), "forehead": (227, 72)},
        head=(226, 100, 76, 88), body=(250, 470, 250, 320),
        rest={"smile": -0.45},  # she smiles in the photo
    ),
    "grace_hopper": SourcePhoto(
        "grace_hopper",
        {"eye_r": (219.5, 193.5), "eye_r_up": (216, 187), "eye_r_lo": (220, 197),
         "eye_l": (307.5, 189), "eye_l_up": (311, 182), "eye_l_lo": (308, 193),
         "brow_r_out": (182, 177), "brow_r_mid": (202, 165), "brow_r_in": (241, 164),
         "brow_l_out": (342, 169), "brow_l_mid": (322, 159), "brow_l_in": (284, 162),
         "mouth_r": (232, 278), "mouth_l": (305, 275), "lip_up_in": (270, 278), "lip_lo_in": (270, 279),
         "lip_lo_out": (271, 290), "nose": (269, 247), "chin": (274, 333), "forehead": (260, 132)},
        head=(262, 190, 118, 170), body=(265, 620, 270, 310),
        rest={},
    ),
}
# fmt: on
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)


@functools.lru_cache(maxsize=4)
def load_source(name: str) -> np.ndarray:
    """The source photograph as RGB uint8 (read-only)."""
    if name == "astronaut":
        import skimage.data

        img = np.ascontiguousarray(skimage.data.astronaut()[:, :, :3])
    elif name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(path)
        img = np.ascontiguousarray(bgr[:, :, ::-1])
    else:
        raise KeyError(f"unknown source photo {name!r}; known: {list(SOURCES)}")
    img.setflags(write=False)
    return img


EXPRESSIONS: tuple[str, ...] = ("smile", "jaw", "stretch", "brow_raise", "brow_inner", "furrow", "eye_open")
# per-actor face shape: resting mouth corners, mouth width, brow height and slant, eye size
_SHAPE_RANGE = np.array([0.15, 0.0, 0.35, 0.35, 0.2, 0.2, 0.35])


@dataclass(frozen=True)
class Appearance:
    """How one actor looks: which photo, framed and coloured how."""

    source: str
    iod_frac: float  # inter-ocular distance / frame size
    aspect: float  # face width stretch (>1 wider)
    roll_deg: float
    dx: float  # face centre offset / frame size
    dy: float
    mirror: bool
    brightness: float
    contrast: float
    saturation: float
    warmth: float  # + warmer (red up, blue down)
    hue_deg: float
    skin_tone: float  # -1 lighter .. +1 darker skin
    bg_mix: float  # 0 original background .. 1 fully replaced
    bg_colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    bg_angle: float
    bg_seed: int
    expressivity: float  # per-actor gain on the emotion cues
    shape: tuple[float, ...]  # static per-actor offsets on the expression bases: brow height, eye size, ...


def sample_appearance(source: str, rng: np.random.Generator) -> Appearance:
    """Draw an actor's appearance for ``source`` (moderate ranges: MediaPipe must still find the face)."""
    return Appearance(
        source=source,
        iod_frac=float(rng.uniform(0.19, 0.25)),
        aspect=float(rng.uniform(0.9, 1.1)),
        roll_deg=float(rng.uniform(-7, 7)),
        dx=float(rng.uniform(-0.05, 0.05)),
        dy=float(rng.uniform(-0.04, 0.05)),
        mirror=bool(rng.random() < 0.5),
        brightness=float(rng.uniform(0.8, 1.15)),
        contrast=float(rng.uniform(0.85, 1.15)),
        saturation=float(rng.uniform(0.7, 1.25)),
        warmth=float(rng.uniform(-0.06, 0.06)),
        hue_deg=float(rng.uniform(-10, 10)),
        skin_tone=float(rng.uniform(-0.6, 1.0)),
        bg_mix=float(rng.uniform(0.35, 1.0)),
        bg_colors=(
            tuple(float(x) for x in rng.uniform(0.1, 0.9, 3)),  # type: ignore[arg-type]
            tuple(float(x) for x in rng.uniform(0.1, 0.9, 3)),
        ),
        bg_angle=float(rng.uniform(0, np.pi)),
        bg_seed=int(rng.integers(2**31)),
        expressivity=float(rng.uniform(0.8, 1.2)),
        shape=tuple(float(x) for x in rng.uniform(-1, 1, len(EXPRESSIONS)) * _SHAPE_RANGE),
    )


def _ellipse_mask(shape: tuple[int, int], e: tuple[float, float, float, float], feather: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    r = np.sqrt(((xx - e[0]) / e[2]) ** 2 + ((yy - e[1]) / e[3]) ** 2)
    return np.clip((1.0 - r) * min(e[2], e[3]) / feather + 0.5, 0.0, 1.0)


def _background_key(source: str, lab: np.ndarray) -> np.ndarray:
    """Soft 0..1 likelihood that a pixel is the photo's backdrop (grey studio wall / blue sky)."""
    lum, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    if source == "astronaut":
        chroma = np.hypot(a, b)
        return np.clip((lum - 66.0) / 8.0, 0, 1) * np.clip((16.0 - chroma) / 6.0, 0, 1)
    return np.clip((-b - 8.0) / 8.0, 0, 1)


def _styled_source(app: Appearance, scale: float) -> tuple[np.ndarray, float]:
    """The recoloured, re-backgrounded source photo, pre-scaled by ``scale`` (<= 1) against aliasing."""
    src = SOURCES[app.source]
    img = load_source(app.source)
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    head = _ellipse_mask((h, w), tuple(v * scale for v in src.head), 10 * scale)  # type: ignore[arg-type]
    body = _ellipse_mask((h, w), tuple(v * scale for v in src.body), 14 * scale)  # type: ignore[arg-type]
    cx, cy, ax, ay = (v * scale for v in src.head)
    face = _ellipse_mask((h, w), (cx, cy + 0.1 * ay, 0.72 * ax, 0.8 * ay), 6 * scale)
    lab0 = cv2.cvtColor(x, cv2.COLOR_RGB2LAB)
    key = _background_key(app.source, lab0) * (1.0 - face)  # keyed background pixels around the hair/hat
    person = cv2.GaussianBlur(np.maximum(head * (1.0 - key), body), (0, 0), 1.5 * scale + 0.5)[..., None]
    # background: gradient between two colours plus a low-frequency texture
    rng = np.random.default_rng(app.bg_seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (np.cos(app.bg_angle) * xx / w + np.sin(app.bg_angle) * yy / h)[..., None]
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    c0, c1 = (np.array(c, dtype=np.float32) for c in app.bg_colors)
    tex = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    bg = (1 - g) * c0 + g * c1 + 0.06 * tex[..., None]
    x = person * x + (1 - person) * (app.bg_mix * bg + (1 - app.bg_mix) * x)
    # colour: skin tone inside the head region, then global hue/saturation/white balance/brightness
    lab = cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    hm = head * np.clip((lab[..., 1] - 2.0) / 8.0, 0.0, 1.0)  # reddish pixels of the head: skin and lips
    lab[..., 0] *= 1.0 - 0.22 * app.skin_tone * hm
    lab[..., 2] += 6.0 * app.skin_tone * hm
    th = np.deg2rad(app.hue_deg)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = app.saturation * (np.cos(th) * a - np.sin(th) * b)
    lab[..., 2] = app.saturation * (np.sin(th) * a + np.cos(th) * b)
    lab[..., 0] = np.clip(50.0 + app.contrast * (lab[..., 0] - 50.0), 0, 100)
    x = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    x *= app.brightness * np.array([1 + app.warmth, 1.0, 1 - app.warmth], dtype=np.float32)
    return np.ascontiguousarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)), scale


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


HEAD: tuple[str, ...] = ("shake", "nod", "tilt")


class Rig:
    """One actor's renderer at ``size`` x ``size``: precomputed framing map and displacement bases."""

    def __init__(self, app: Appearance, size: int) -> None:
        src = SOURCES[app.source]
        lm = {k: np.array(v, dtype=np.float64) for k, v in src.landmarks.items()}
        eye_vec = lm["eye_l"] - lm["eye_r"]
        iod_src = float(np.hypot(*eye_vec))
        roll_src = float(np.arctan2(eye_vec[1], eye_vec[0]))
        self.size = size
        self.u = u = app.iod_frac * size  # the displacement unit: output inter-ocular distance
        k = u / iod_src
        self.image, pre = _styled_source(app, min(1.0, 1.25 * k))
        k /= pre
        c_src = 0.25 * (lm["eye_l"] + lm["eye_r"] + lm["mouth_l"] + lm["mouth_r"]) * pre
        c_out = np.array([size * (0.5 + app.dx), size * (0.5 + app.dy)])

        def rot(a: float) -> np.ndarray:
            return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

        mirror = np.diag([-1.0 if app.mirror else 1.0, 1.0])
        fwd = rot(np.deg2rad(app.roll_deg)) @ mirror @ np.diag([k * app.aspect, k / app.aspect]) @ rot(-roll_src)
        inv = np.linalg.inv(fwd)  # output offsets -> source offsets (pre-scaled source pixels)
        self._inv = inv.astype(np.float32)
        self.lm = {n: c_out + fwd @ (p * pre - c_src) for n, p in lm.items()}  # landmarks in output pixels
        up = fwd @ np.array([0.0, -1.0])
        self.up = up / np.linalg.norm(up)
        self.right = np.array([-self.up[1], self.up[0]])  # image-right when upright
        self.down = -self.up

        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self._grid = np.stack([xx, yy])
        off = self._grid - c_out[:, None, None].astype(np.float32)
        c_map = c_src.astype(np.float32)[:, None, None]
        self._base = _hwc(np.einsum("ij,jhw->ihw", self._inv, off) + c_map)

        # expression bases restricted to an even-sized face ROI (forward displacement fields, output pixels
        # per unit), stored as backward maps in source units (-inv @ v) at half resolution: they are smooth,
        # and summing them is the per-frame cost that matters
        pts = np.array(list(self.lm.values()))
        lo = np.floor(pts.min(0) - 0.9 * u).astype(int).clip(0, size)
        hi = lo + 2 * ((np.ceil(pts.max(0) + 0.9 * u).astype(int).clip(0, size) - lo) // 2)
        self._roi = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        fields = self._expression_fields(self._grid[:, self._roi[0], self._roi[1]])
        self._expr = np.stack([_half(-np.einsum("ij,jhw->ihw", self._inv, fields[n])) for n in EXPRESSIONS])
        self._head = np.stack([_half(f) for f in self._head_fields()])
        self._grid_hwc = _hwc(self._grid)
        m = self.lm
        self.mouth_centre = 0.5 * (m["lip_up_in"] + m["lip_lo_in"])
        self.mouth_halfwidth = 0.5 * float(np.linalg.norm(m["mouth_l"] - m["mouth_r"]))
        self.rest = np.array([src.rest.get(n, 0.0) for n in EXPRESSIONS], dtype=np.float32) + np.array(
            app.shape, dtype=np.float32
        )

    # -- displacement fields -------------------------------------------------------------------------------
    def _gauss(self, px: np.ndarray, centre: np.ndarray, sx: float, sy: float) -> np.ndarray:
        d = px - centre.astype(np.float32)[:, None, None]
        fx = d[0] * self.right[0] + d[1] * self.right[1]
        fy = d[0] * self.down[0] + d[1] * self.down[1]
        return np.exp(-0.5 * ((fx / (sx * self.u)) ** 2 + (fy / (sy * self.u)) ** 2))

    @staticmethod
    def _vec(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.stack([w * v[0], w * v[1]])

    def _expression_fields(self, px: np.ndarray) -> dict[str, np.ndarray]:
        u, m, up, right = self.u, self.lm, self.up, self.right
        mouth_mid = 0.5 * (m["mouth_l"] + m["mouth_r"])
        f: dict[str, np.ndarray] = {}
        smile = np.zeros_like(px)
        stretch = np.zeros_like(px)
        for corner in ("mouth_l", "mouth_r"):
            out = right * np.sign(np.dot(m[corner] - mouth_mid, right))
            g = self._gauss(px, m[corner], 0.3, 0.24)
            smile += self._vec(g, u * (0.05 * out + 0.10 * up))
            stretch += self._vec(self._gauss(px, m[corner], 0.28, 0.22), u * (0.07 * out + 0.015 * self.down))
        f["smile"], f["stretch"] = smile, stretch
        # jaw: everything below the lip seam moves down, fading sideways and below the chin
        seam = 0.5 * (m["lip_up_in"] + m["lip_lo_in"])
        d = px - seam.astype(np.float32)[:, None, None]
        fy = d[0] * self.down[0] + d[1] * self.down[1]
        fx = d[0] * right[0] + d[1] * right[1]
        chin_dy = float(np.dot(m["chin"] - seam, self.down))
        w = _smoothstep((fy + 0.04 * u) / (0.36 * u)) * np.exp(-0.5 * (fx / (0.75 * u)) ** 2)
        w *= np.exp(-0.5 * (np.maximum(fy - chin_dy, 0) / (0.35 * u)) ** 2)
        f["jaw"] = self._vec(w, 0.15 * u * self.down)
        raise_ = np.zeros_like(px)
        inner = np.zeros_like(px)
        furrow = np.zeros_like(px)
        eyes = np.zeros_like(px)
        mid = 0.5 * (m["eye_l"] + m["eye_r"])
        for s in ("l", "r"):
            raise_ += self._vec(self._gauss(px, m[f"brow_{s}_mid"], 0.42, 0.2), 0.12 * u * up)
            inner += self._vec(self._gauss(px, m[f"brow_{s}_in"], 0.2, 0.18), 0.10 * u * up)
            toward = right * np.sign(np.dot(mid - m[f"brow_{s}_in"], right))
            furrow += self._vec(self._gauss(px, m[f"brow_{s}_in"], 0.22, 0.18), u * (0.08 * self.down + 0.05 * toward))
            furrow += self._vec(self._gauss(px, m[f"brow_{s}_mid"], 0.3, 0.18), 0.03 * u * self.down)
            eyes += self._vec(self._gauss(px, m[f"eye_{s}_up"], 0.2, 0.08), 0.03 * u * up)
            eyes += self._vec(self._gauss(px, m[f"eye_{s}_lo"], 0.18, 0.06), 0.015 * u * self.down)
        f["brow_raise"], f["brow_inner"], f["furrow"], f["eye_open"] = raise_, inner, furrow, eyes
        return f

    def _head_fields(self) -> np.ndarray:
        """(3, 2, H, W) forward fields: shake (0.1u right), nod (0.08u down), tilt (1 degree roll)."""
        u, m = self.u, self.lm
        centre = 0.5 * (m["forehead"] + m["chin"])
        d = self._grid - centre.astype(np.float32)[:, None, None]
        fx = d[0] * self.right[0] + d[1] * self.right[1]
        fy = d[0] * self.down[0] + d[1] * self.down[1]
        r = np.sqrt((fx / (1.45 * u)) ** 2 + (fy / (1.9 * u)) ** 2)
        w = _smoothstep((1.25 - r) / 0.6)
        pivot = m["chin"] + 0.4 * u * self.down
        p = self._grid - pivot.astype(np.float32)[:, None, None]
        rot = np.stack([-p[1], p[0]]) * (np.pi / 180.0)  # d/dtheta of a rotation about the pivot
        return np.stack([self._vec(w, 0.1 * u * self.right), self._vec(w, 0.08 * u * self.down), rot * w]).astype(
            np.float32
        )

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self, expr: np.ndarray, head: np.ndarray) -> np.ndarray:
        """One RGB frame from expression coefficients (order :data:`EXPRESSIONS`) and head (:data:`HEAD`)."""
        expr = expr + self.rest
        maps = self._base.copy()
        maps[self._roi] += _full(_weighted_sum(expr, self._expr))
        img = cv2.remap(self.image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        self._draw_cavity(img, expr)
        head_maps = self._grid_hwc - _full(_weighted_sum(head, self._head))
        return cv2.remap(img, head_maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def _draw_cavity(self, img: np.ndarray, expr: np.ndarray) -> None:
        e = dict(zip(EXPRESSIONS, expr, strict=True))
        opening = 0.15 * self.u * max(float(e["jaw"]), 0.0)
        if opening < 0.01 * self.u:
            return
        centre = self.mouth_centre + 0.5 * opening * self.down + 0.10 * self.u * float(e["smile"]) * 0.3 * self.up
        half_w = self.mouth_halfwidth * (0.55 + 0.08 * float(e["stretch"]) + 0.05 * float(e["smile"]))
        half_h = 0.5 * opening
        pad = int(half_w + 4)
        x0, y0 = int(centre[0]) - pad, int(centre[1]) - pad
        x1, y1 = x0 + 2 * pad + 1, y0 + 2 * pad + 1
        if x0 < 0 or y0 < 0 or x1 > img.shape[1] or y1 > img.shape[0]:
            return
        alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
        angle = float(np.degrees(np.arctan2(self.right[1], self.right[0])))
        cv2.ellipse(
            alpha,
            (round((centre[0] - x0) * 16), round((centre[1] - y0) * 16)),
            (round(half_w * 16), round(max(half_h, 0.5) * 16)),
            angle,
            0,
            360,
            1.0,
            -1,
            cv2.LINE_AA,
            4,
        )
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, 0.035 * self.u))
        alpha *= 0.95 * min(1.0, opening / (0.04 * self.u))
        patch = img[y0:y1, x0:x1].astype(np.float32)
        cavity = np.array([48.0, 16.0, 20.0], np.float32)
        img[y0:y1, x0:x1] = (patch + alpha[..., None] * (cavity - patch) + 0.5).astype(np.uint8)


def _hwc(field: np.ndarray) -> np.ndarray:
    """(2, H, W) -> contiguous float32 (H, W, 2), the layout ``cv2.remap`` takes as one map."""
    return np.ascontiguousarray(np.moveaxis(field, 0, -1), dtype=np.float32)


def _half(field: np.ndarray) -> np.ndarray:
    """(2, H, W) field -> (H/2, W/2, 2) by 2x2 averaging."""
    f = _hwc(field)
    return cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _full(field: np.ndarray) -> np.ndarray:
    """(h, w, 2) half-resolution field -> (2h, 2w, 2), bilinear."""
    return cv2.resize(field, (2 * field.shape[1], 2 * field.shape[0]), interpolation=cv2.INTER_LINEAR)


def _weighted_sum(coefs: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``sum_k coefs[k] * basis[k]`` (element-wise, no BLAS threads)."""
    out = np.zeros(basis.shape[1:], np.float32)
    tmp = np.empty_like(out)
    for c, b in zip(coefs.tolist(), basis, strict=True):
        if c != 0.0:
            np.multiply(b, np.float32(c), out=tmp)
            out += tmp
    return out


def face_tracks(
    cues: FaceCues, plan: Plan, times: np.ndarray, expressivity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame coefficients: (T, len(EXPRESSIONS)) and (T, len(HEAD)); the mouth follows ``plan.mouth``."""
    t = times
    onset = rng.uniform(0.0, 0.6)
    ramp = 0.3 + 0.7 * _smoothstep((t - onset) / 0.6)
    ph = rng.uniform(0, 2 * np.pi, 6)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    blink_t = rng.uniform(0.2, t[-1] if len(t) else 1.0, 3)
    blink_on = rng.random(3) < np.array([0.8, 0.5, 0.2])
    drift = rng.standard_normal(3)
    mouth, rnd, acc = plan.at(plan.mouth, t), plan.at(plan.rounding, t), plan.at(plan.accent, t)
    e = expressivity
    blink = -3.0 * sum(np.exp(-0.5 * ((t - bt) / 0.045) ** 2) for bt, on in zip(blink_t, blink_on, strict=True) if on)
    slow = np.sin(2 * np.pi * 0.3 * t + ph[5])
    expr = np.stack(
        [
            e * cues.smile * ramp + 0.05 * drift[0] * slow,
            np.clip(e * cues.jaw * ramp + cues.speech_gain * mouth, 0.0, 1.5),
            e * cues.stretch * ramp - 0.6 * rnd,
            e * cues.brow_raise * ramp + 0.3 * acc,
            e * cues.brow_inner * ramp,
            e * cues.furrow * ramp,
            np.maximum(e * cues.eye_open * ramp + blink, -3.0),
        ],
        axis=1,
    )
    f = cues.head_hz
    shake = cues.shake * (0.7 * np.sin(2 * np.pi * 0.8 * f * t + ph[0]) + 0.3 * np.sin(2 * np.pi * 1.9 * f * t + ph[1]))
    nod = (
        cues.nod * (0.7 * np.sin(2 * np.pi * f * t + ph[2]) + 0.3 * np.sin(2 * np.pi * 2.3 * f * t + ph[3]))
        + cues.head_down * ramp
        + 0.35 * acc
    )
    tilt = sign * cues.tilt_deg * ramp + 0.3 * cues.tilt_deg * np.sin(2 * np.pi * 0.5 * f * t + ph[4])
    return expr.astype(np.float32), np.stack([shake, nod, tilt], axis=1).astype(np.float32)
