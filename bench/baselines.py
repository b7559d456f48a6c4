"""Classical baselines for bench/quality.mjs, computed by the libraries a user would compare with:

  python3 bench/baselines.py superres --scale 4 IN_DIR OUT_DIR     # PIL bicubic and Lanczos upsampling
  python3 bench/baselines.py inpaint IN_DIR MASK_DIR OUT_DIR       # OpenCV Telea and Navier-Stokes (radius 3)
  python3 bench/baselines.py inpaint --xphoto IN_DIR MASK_DIR OUT_DIR  # and opencv-contrib's xphoto FSR (fast) and
                                                                   # shift-map (patch based)
  python3 bench/baselines.py denoise --sigma 25 IN_DIR OUT_DIR     # scikit-image non-local means, h = f * sigma

Every PNG of IN_DIR (8-bit RGB; masks: white = hole) gives OUT_DIR/<method>/<same name>.png. Non-local means is
run at several filter strengths h = f * sigma (f in --h-factors) so that the benchmark can keep the best one (an
oracle choice, in the baseline's favour), with scikit-image's recommended 5x5 patches and 13x13 search window.
Prints one JSON line: the methods written, or {"missing": ...} (exit 3) when a library is not installed.
"""
import argparse
import json
import os
import sys

import numpy as np


def pngs(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".png"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=["superres", "inpaint", "denoise"])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--h-factors", default="0.2,0.3,0.4,0.6,0.8")
    p.add_argument("--xphoto", action="store_true")
    a = p.parse_args()
    try:
        from PIL import Image
        if a.task == "inpaint":
            import cv2
            if a.xphoto:
                cv2.xphoto.inpaint  # noqa: B018 (opencv-contrib's xphoto, else AttributeError)
        if a.task == "denoise":
            from skimage.restoration import denoise_nl_means
    except (ImportError, AttributeError) as e:
        print(json.dumps({"missing": str(e)}))
        sys.exit(3)

    out_dir = a.dirs[-1]
    written = {}

    def save(method, name, arr):
        d = os.path.join(out_dir, method)
        os.makedirs(d, exist_ok=True)
        Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8)).save(os.path.join(d, name))
        written[method] = written.get(method, 0) + 1

    in_dir = a.dirs[0]
    for name in pngs(in_dir):
        with Image.open(os.path.join(in_dir, name)) as im:
            rgb = im.convert("RGB")
        if a.task == "superres":
            size = (rgb.width * a.scale, rgb.height * a.scale)
            save("bicubic (PIL)", name, np.asarray(rgb.resize(size, Image.BICUBIC), dtype=np.float64))
            save("Lanczos (PIL)", name, np.asarray(rgb.resize(size, Image.LANCZOS), dtype=np.float64))
        elif a.task == "inpaint":
            with Image.open(os.path.join(a.dirs[1], name)) as m:
                mask = (np.asarray(m.convert("L")) > 127).astype(np.uint8) * 255
            bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
            for method, flag in (("Telea (OpenCV)", cv2.INPAINT_TELEA), ("Navier-Stokes (OpenCV)", cv2.INPAINT_NS)):
                save(method, name, cv2.inpaint(bgr, mask, 3, flag)[:, :, ::-1].astype(np.float64))
            if a.xphoto:
                # xphoto's mask is the other way round: non-zero = known.
                known = np.where(mask > 0, 0, 255).astype(np.uint8)
                for method, flag in (("FSR (xphoto)", cv2.xphoto.INPAINT_FSR_FAST), ("shift-map (xphoto)", cv2.xphoto.INPAINT_SHIFTMAP)):
                    out = np.zeros_like(bgr)
                    cv2.xphoto.inpaint(bgr, known, out, flag)
                    save(method, name, out[:, :, ::-1].astype(np.float64))
        else:
            img = np.asarray(rgb, dtype=np.float64) / 255.0
            s = a.sigma / 255.0
            for f in (float(v) for v in a.h_factors.split(",")):
                out = denoise_nl_means(img, h=f * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True,
                                       channel_axis=-1)
                save(f"non-local means h={f:g}sigma", name, out * 255.0)
    print(json.dumps({"written": written}))


if __name__ == "__main__":
    main()
