"""POST /sdapi/v1/extra-single-image and /extra-batch-images over real HTTP: A1111's request and response
shapes, base64 and data URLs, numeric strings, the PNG text returned, and the 422s naming their field."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from api import build_api_app
from api.testing import LiveServer
from pipelines.limits import Limits
from tests.demo_engine import make_demo_engine
from tests.test_upscalers import tiny_esrgan

V1 = "/sdapi/v1"
A1111_REQUEST_FIELDS = {  # modules/api/models.py ExtrasBaseRequest
    "resize_mode", "show_extras_results", "gfpgan_visibility", "codeformer_visibility", "codeformer_weight",
    "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h", "upscaling_crop", "upscaler_1",
    "upscaler_2", "extras_upscaler_2_visibility", "upscale_first"}


def noise(w=40, h=30, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8), "RGB")


def png_b64(image, parameters=None):
    info = None
    if parameters:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(text):
    assert not text.startswith("data:")
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("extras-api")
    (data / "models" / "ESRGAN").mkdir(parents=True)
    save_file(tiny_esrgan(4).state_dict(), data / "models" / "ESRGAN" / "4x-Tiny.safetensors")
    engine = make_demo_engine(data)
    engine.limits = Limits(max_output_pixels=1024 * 1024)
    app = build_api_app(engine.models.settings, engine.models, engine)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield client, engine


@pytest.fixture
def client(setup):
    return setup[0]


def test_single_image_raw_base64_returns_a1111_shape(client, setup):
    r = client.post(f"{V1}/extra-single-image", json={
        "image": png_b64(noise(), "a dog\nSteps: 20, Seed: 3"), "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"html_info", "image"}
    assert body["html_info"] == "<p>Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos</p>"
    image = decoded(body["image"])
    assert image.size == (80, 56)  # 60 -> 56: a multiple of 8, as A1111
    assert image.info["parameters"] == "a dog\nSteps: 20, Seed: 3"  # the source's own text comes back
    assert image.info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"
    assert not (setup[1].outputs_root / "extras-images").exists()  # A1111's API does not save


def test_single_image_data_url_numeric_string_and_model_upscaler(client):
    r = client.post(f"{V1}/extra-single-image", json={
        "image": "data:image/png;base64," + png_b64(noise(24, 16)), "upscaling_resize": "3",
        "upscaler_1": "4x-Tiny", "upscaler_2": "Nearest", "extras_upscaler_2_visibility": "0.5"})
    assert r.status_code == 200, r.text
    assert decoded(r.json()["image"]).size == (72, 48)
    assert "Postprocess upscaler: 4x-Tiny, Postprocess upscaler 2: Nearest" in r.json()["html_info"]


def test_single_image_scale_to_with_crop(client):
    r = client.post(f"{V1}/extra-single-image", json={
        "image": png_b64(noise(100, 75)), "resize_mode": 1, "upscaling_resize_w": 512,
        "upscaling_resize_h": 300, "upscaling_crop": True, "upscaler_1": "Nearest"})
    assert r.status_code == 200, r.text
    assert decoded(r.json()["image"]).size == (512, 300)
    assert "Postprocess crop to: 512x300" in r.json()["html_info"]


def test_batch_images_returns_every_image(client):
    r = client.post(f"{V1}/extra-batch-images", json={
        "imageList": [{"data": png_b64(noise(16, 16, 1)), "name": "a.png"},
                      {"data": "data:image/png;base64," + png_b64(noise(24, 16, 2)), "name": "b.png"}],
        "upscaling_resize": 2, "upscaler_1": "Nearest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"html_info", "images"}
    assert [decoded(i).size for i in body["images"]] == [(32, 32), (48, 32)]
    expected = noise(16, 16, 1).resize((32, 32), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(decoded(body["images"][0]).convert("RGB")), np.asarray(expected))


@pytest.mark.parametrize("route,body,field", [
    ("extra-single-image", {"image": base64.b64encode(b"\x89PNG broken").decode()}, "image"),
    ("extra-single-image", {"image": ""}, "image"),
    ("extra-single-image", {"upscaler_1": "Nope"}, "upscaler_1"),
    ("extra-single-image", {"upscaler_1": "Lanczos", "upscaling_resize": 16, "image_size": (100, 100)},
     "upscaling_resize"),
    ("extra-single-image", {"gfpgan_visibility": 0.5}, "gfpgan_visibility"),
    ("extra-batch-images", {"imageList": [{"data": "PLACEHOLDER", "name": "ok.png"},
                                          {"data": "bm90IGFuIGltYWdl", "name": "bad.png"}]}, "imageList[1].data"),
])
def test_bad_input_is_a_422_naming_the_field(client, route, body, field):
    body = dict(body)
    size = body.pop("image_size", (40, 30))
    body.setdefault("image", png_b64(noise(*size)))
    for item in body.get("imageList", []):
        if item["data"] == "PLACEHOLDER":
            item["data"] = png_b64(noise())
    r = client.post(f"{V1}/{route}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and field in r.json()["detail"]


@pytest.mark.parametrize("body,loc", [({"resize_mode": 2}, "resize_mode"),
                                      ({"upscaling_resize": "two"}, "upscaling_resize"),
                                      ({"upscaling_resize": 0}, "upscaling_resize")])
def test_schema_errors_are_fastapi_422s_naming_the_field(client, body, loc):
    r = client.post(f"{V1}/extra-single-image", json={"image": png_b64(noise()), **body})
    assert r.status_code == 422
    assert any(loc in error["loc"] for error in r.json()["detail"])


def test_openapi_lists_a1111_field_names(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    single = schemas["ExtrasSingleImageRequest"]["properties"]
    batch = schemas["ExtrasBatchImagesRequest"]["properties"]
    assert set(single) == A1111_REQUEST_FIELDS | {"image"}
    assert set(batch) == A1111_REQUEST_FIELDS | {"imageList"}
    assert single["upscaling_resize"]["type"] == "number" and single["upscaling_resize_w"]["type"] == "integer"
    assert set(schemas["ExtrasBatchImagesResponse"]["properties"]) == {"html_info", "images"}
    assert set(schemas["ExtrasSingleImageResponse"]["properties"]) == {"html_info", "image"}
