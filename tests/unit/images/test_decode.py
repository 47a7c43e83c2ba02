"""prepare: every picture a user may send comes out as botkit's own re-encoding (one upright
frame, no metadata, within max_side), and every bad file is refused with a message that says
what is wrong and what is allowed, before it costs the memory it claims."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import zlib

import pytest
from PIL import ExifTags, ImageCms
from PIL import Image as PilImage

from botkit.config.vision import VisionConfig
from botkit.images import decode
from botkit.images.decode import ImageRefused, prepare
from botkit.images.spec import Image
from tests.unit.images.craft import chunk, encoded, png_chunks, zero_png

CONFIG = VisionConfig()


def _photo(width: int, height: int) -> PilImage.Image:
    """A photo-like picture: a colour gradient (JPEG stays JPEG, PNG of it is not small)."""
    return PilImage.merge(
        "RGB",
        [
            PilImage.linear_gradient("L").resize((width, height)),
            PilImage.linear_gradient("L").rotate(90).resize((width, height)),
            PilImage.new("L", (width, height), 90),
        ],
    )


def _read(image: Image) -> PilImage.Image:
    """The re-encoded picture, opened, its declared type and size checked."""
    picture = PilImage.open(io.BytesIO(image.data))
    assert picture.get_format_mimetype() == image.mime
    assert picture.size == (image.width, image.height)
    assert image.sha256 == hashlib.sha256(image.data).hexdigest()
    return picture


def _close(pixel: object, expected: tuple[int, ...], slack: int = 12) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= slack for a, b in zip(pixel, expected, strict=True))


async def _refused(data: bytes, config: VisionConfig = CONFIG) -> str:
    with pytest.raises(ImageRefused) as caught:
        await prepare(data, config, name="cat.png")
    return str(caught.value)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A real 20,000 × 20,000 PNG, all black: 400 M pixels in some 400 KB."""
    return zero_png(20_000, 20_000)


# Refused.


async def test_a_file_over_max_bytes_is_refused_before_it_is_opened() -> None:
    # A valid picture followed by 50 MB: Pillow would open it (it stops at IEND).
    data = encoded(PilImage.new("RGB", (8, 8)), "PNG") + bytes(50 * 1024 * 1024)
    message = await _refused(data)
    assert "cat.png is 50.0 MB" in message
    assert "up to 20.0 MB" in message


async def test_a_huge_picture_in_a_small_file_is_refused_from_its_header(bomb: bytes) -> None:
    assert len(bomb) < 1024 * 1024
    message = await _refused(bomb)  # past Pillow's own limit: its check in open says so
    assert message == (
        "cat.png is a picture of more than 178,956,970 pixels; pictures of up to 40,000,000 "
        "pixels are accepted: send a smaller one"
    )


async def test_a_picture_over_max_pixels_is_refused_even_below_pillows_own_limit() -> None:
    data = zero_png(5000, 5000)  # 25 M pixels: under Pillow's 89 M, over this config's 10 M
    message = await _refused(data, VisionConfig(max_pixels=10_000_000))
    assert message == (
        "cat.png is 5,000 × 5,000 pixels (25,000,000); pictures of up to 10,000,000 pixels "
        "are accepted: send a smaller one"
    )


async def test_a_stream_that_inflates_past_its_header_decodes_only_what_the_header_says() -> None:
    # 64 × 64 declared, 50 MB of image data behind it: the decoder stops at 64 rows.
    data = zero_png(64, 64, rows=800_000)
    image, _ = await prepare(data, CONFIG)
    assert (image.width, image.height) == (64, 64)


async def test_a_text_chunk_bomb_is_refused() -> None:
    text = b"k\0\0" + zlib.compress(b"a" * (100 * 1024 * 1024))  # zTXt: 100 MB of text
    data = png_chunks(8, 8, zlib.compress(b"\0" * 72), before=chunk(b"zTXt", text))
    assert "damaged" in await _refused(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_a_truncated_file_is_refused(fmt: str) -> None:
    data = encoded(_photo(400, 300), fmt)
    message = await _refused(data[: len(data) // 2])
    assert "damaged or cut short" in message
    assert "PNG, JPEG, WebP, GIF (its first frame) or BMP" in message


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 40,  # random-looking bytes
        b"%PDF-1.7\n" + bytes(2000),  # another kind of file
        encoded(PilImage.new("RGB", (8, 8)), "TIFF"),  # a picture, of a format not taken
    ],
    ids=["bytes", "pdf", "tiff"],
)
async def test_what_is_not_an_accepted_picture_is_refused(data: bytes) -> None:
    message = await _refused(data)
    assert message == (
        "cat.png is not a picture botkit can read; "
        "send a PNG, JPEG, WebP, GIF (its first frame) or BMP"
    )


async def test_a_decode_that_hangs_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*_: object) -> Image:
        release.wait(10)
        raise AssertionError("not awaited any more")

    monkeypatch.setattr(decode, "_prepare", hang)
    monkeypatch.setattr(decode, "DECODE_TIMEOUT", 0.05)
    try:
        assert "took more than" in await _refused(b"\x89PNG")
    finally:
        release.set()


async def test_a_decode_that_runs_out_of_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(*_: object) -> Image:
        raise MemoryError

    monkeypatch.setattr(decode, "_prepare", exhausted)
    assert "too large to decode on this machine" in await _refused(b"\x89PNG")


async def test_a_bug_in_the_worker_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> Image:
        raise RuntimeError("injected")

    monkeypatch.setattr(decode, "_prepare", broken)
    with pytest.raises(RuntimeError, match="injected"):
        await prepare(b"\x89PNG", CONFIG)


async def test_the_decoding_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = decode._prepare

    def recorded(*args: object) -> Image:
        threads.append(threading.current_thread())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(decode, "_prepare", recorded)
    await prepare(encoded(_photo(50, 40), "PNG"), CONFIG)
    assert threads
    assert threads[0] is not threading.main_thread()


# Accepted, and re-encoded.


async def test_exif_gps_and_every_other_metadata_are_stripped() -> None:
    exif = PilImage.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 31.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(_photo(300, 200), "JPEG", exif=exif, icc_profile=icc, comment=b"secret")
    sent = PilImage.open(io.BytesIO(data))
    assert sent.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test's photo does carry GPS

    image, seconds = await prepare(data, CONFIG)
    out = _read(image)
    assert image.mime == "image/jpeg"
    assert not out.getexif()
    assert not {"exif", "icc_profile", "comment"} & out.info.keys()
    assert b"PhoneMaker" not in image.data
    assert b"secret" not in image.data
    assert seconds > 0


async def test_a_photo_taken_sideways_comes_out_upright() -> None:
    picture = PilImage.new("RGB", (200, 100), (220, 0, 0))
    picture.paste((0, 0, 220), (100, 0, 200, 100))  # left half red, right half blue
    exif = PilImage.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned 90° clockwise
    image, _ = await prepare(encoded(picture, "JPEG", exif=exif), CONFIG)
    out = _read(image).convert("RGB")
    assert out.size == (100, 200)
    assert _close(out.getpixel((50, 20)), (220, 0, 0), 30)  # the left half is now on top
    assert _close(out.getpixel((50, 180)), (0, 0, 220), 30)


async def test_an_animated_gif_gives_its_first_frame_as_png() -> None:
    frames = [PilImage.new("RGB", (40, 30), colour) for colour in ("red", "lime", "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(PilImage.open(io.BytesIO(data)), "n_frames", 1) == 3
    image, _ = await prepare(data, CONFIG)
    out = _read(image)
    assert image.mime == "image/png"
    assert getattr(out, "n_frames", 1) == 1
    assert out.convert("RGB").getpixel((20, 15)) == (255, 0, 0)


async def test_transparency_is_kept_as_rgba_png() -> None:
    picture = PilImage.new("RGBA", (64, 64), (0, 128, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 64))
    image, _ = await prepare(encoded(picture, "PNG"), CONFIG)
    out = _read(image)
    assert (image.mime, out.mode) == ("image/png", "RGBA")
    assert out.getpixel((10, 10)) == (0, 0, 0, 0)
    assert out.getpixel((50, 10)) == (0, 128, 255, 255)


async def test_a_cmyk_jpeg_comes_out_rgb_in_its_colours() -> None:
    picture = PilImage.new("CMYK", (64, 64), (0, 255, 255, 0))  # red in ink
    image, _ = await prepare(encoded(picture, "JPEG"), CONFIG)
    out = _read(image)
    assert (image.mime, out.mode) == ("image/jpeg", "RGB")
    assert _close(out.getpixel((32, 32)), (255, 0, 0), 20)


async def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped() -> None:
    picture = PilImage.new("I;16", (4, 1))
    for x, value in enumerate((0, 16384, 32768, 65535)):
        picture.putpixel((x, 0), value)
    image, _ = await prepare(encoded(picture, "PNG"), CONFIG)
    out = _read(image).convert("RGB")
    greys = [out.getpixel((x, 0)) for x in range(4)]
    for grey, expected in zip(greys, (0, 64, 128, 255), strict=True):  # clipped: 0, 255, …
        assert _close(grey, (expected,) * 3, 3)


async def test_a_palette_drawing_stays_png_and_bmp_and_webp_are_taken() -> None:
    drawing = PilImage.new("P", (30, 30))
    drawing.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    drawing.paste(1, (10, 10, 20, 20))
    image, _ = await prepare(encoded(drawing, "PNG"), CONFIG)
    assert (image.mime, _read(image).mode) == ("image/png", "RGB")
    bmp, _ = await prepare(encoded(_photo(30, 20), "BMP"), CONFIG)
    webp, _ = await prepare(encoded(_photo(30, 20), "WEBP"), CONFIG)
    assert (bmp.mime, webp.mime) == ("image/jpeg", "image/jpeg")


async def test_a_large_photo_is_scaled_to_max_side() -> None:
    data = encoded(_photo(8000, 6000), "JPEG", quality=80)
    image, _ = await prepare(data, VisionConfig(max_pixels=50_000_000))
    assert (image.width, image.height) == (1536, 1152)
    out = _read(image)
    # The gradient survives the scaling (LANCZOS, no band of garbage at an edge).
    assert _close(out.getpixel((0, 576)), (128, 0, 90), 25)
    assert _close(out.getpixel((1535, 576)), (128, 255, 90), 25)


async def test_the_same_picture_twice_is_the_same_bytes() -> None:
    data = encoded(_photo(300, 200), "PNG")
    (first, _), (second, _) = await asyncio.gather(prepare(data, CONFIG), prepare(data, CONFIG))
    assert first == second
