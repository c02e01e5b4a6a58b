"""What the face and appearance checks say, and what the operator should do about each fault.

English templates with %(name)s placeholders, merged into ``checks.TEXTS`` so the pages
translate them like every other check message (``appliance/web/i18n/de.json``). An *advice* is
one short instruction the operator can act on at once, shown under a failed or warned check.
"""

from __future__ import annotations

FACE_TEXTS: dict[str, str] = {
    # exposure (OFIQ over-/under-exposure and luminance mean, on the face's skin)
    "exposed": "face well exposed: %(bright)s blown, %(dark)s very dark skin, brightness %(mean)s",
    "overexposed": "face over-exposed: %(bright)s of the skin is blown out (brightness %(mean)s)",
    "underexposed": "face under-exposed: %(dark)s of the skin is very dark (brightness %(mean)s)",
    "exposure dim": "the face is dim (brightness %(mean)s)",
    "exposure bright": "the face is very bright (brightness %(mean)s)",
    # illumination (OFIQ illumination uniformity) and shadows
    "lit evenly": "face lit evenly",
    "lit unevenly": "one side of the face is darker than the other",
    "no face shadow": "no shadows on the face",
    "face shadow": "a shadow falls on the face",
    "no back shadow": "no shadow behind the head",
    "back shadow": "a shadow falls on the background behind the head",
    # natural colour (OFIQ natural colour) and red-eye
    "colour natural": "natural skin colour",
    "colour cast": "unnatural skin colour: check the white balance",
    "greyscale": "black-and-white photo: authorities ask for colour",
    "no red eye": "no red-eye",
    "red eye": "red-eye in the photo",
    # glasses
    "no glasses": "no glasses seen",
    "glasses seen": "glasses seen (frame score %(score)s)",
    "glasses tinted": "tinted lenses or sunglasses",
    "no tint": "no tinted lenses or sunglasses",
    "glasses glare": "glare on the glasses over the eyes",
    "no glare": "no glare over the eyes",
    # head covering and what covers the eyes
    "head bare": "no head covering",
    "head covered": "head covering seen",
    "head covered religious": "religious head covering, face shows from chin to forehead",
    "face hidden": "the head covering hides part of the face (chin to forehead must show)",
    "eyes visible": "both eyes clearly visible",
    "eyes covered": "something covers an eye (hair, a hand, a frame)",
    # face and mouth occlusion (OFIQ face occlusion, mouth occlusion)
    "face visible": "the whole face visible",
    "face covered": "something covers the face (a hand, a mask, a scarf, an object)",
    "mouth visible": "the mouth visible",
    "occlusion unjudged": "not judged: the face is too far over- or under-exposed",
    "mouth covered": "something covers the mouth (%(share)s of the lips)",
}

# One instruction per fault, keyed by the check's message template id (the geometry and pose
# checks' ids are in checks.TEXTS).
ADVICE: dict[str, str] = {
    "faces": "only the customer may be in the photo: retake",
    "no face": "retake with the face toward the camera",
    "head": "retake from the usual distance with the whole head in view",
    "eyes": "retake with the head level and in view",
    "right": "ask the customer to sit in the middle and retake",
    "left": "ask the customer to sit in the middle and retake",
    "roll": "ask the customer to hold the head straight and retake",
    "turned": "ask the customer to face the camera and retake",
    "up": "ask the customer to lower the chin a little and retake",
    "down": "ask the customer to raise the chin a little and retake",
    "eyes closed": "ask the customer to keep both eyes open and retake",
    "mouth open": "ask for a neutral expression with the mouth closed and retake",
    "soft": "check the focus, ask the customer to hold still, and retake",
    "enlarged": "move the camera closer or use a higher resolution",
    "extended": "retake from further away so the shoulders are in the photo",
    "overexposed": "reduce the light or the exposure and retake",
    "underexposed": "add light on the face or raise the exposure and retake",
    "exposure dim": "add light on the face and retake",
    "exposure bright": "reduce the light on the face and retake",
    "lit unevenly": "light both sides of the face equally and retake",
    "face shadow": "soften or move the light so no shadow falls on the face, and retake",
    "back shadow": "move the person away from the wall or light the background, and retake",
    "colour cast": "set the camera's white balance for the studio light and retake",
    "greyscale": "take the photo in colour",
    "red eye": "switch on red-eye reduction or light from the side, and retake",
    "glasses seen": "take off the glasses",
    "glasses tinted": "take off the tinted glasses or sunglasses",
    "glasses glare": "take off the glasses, or tilt them or the light so no glare remains",
    "head covered": "remove the cap or hat, or mark a religious head covering",
    "face hidden": "move the head covering so the face shows from chin to forehead",
    "eyes covered": "move the hair or the object away from the eyes and retake",
    "face covered": "take the hand or the object away from the face and retake",
    "mouth covered": "take off the mask or the scarf, or take the hand away from the mouth",
    # The background check's faults (their messages are in checks.TEXTS).
    "uneven": "light the backdrop evenly, or retake against the plain backdrop",
    **{
        f"remnant {place}": "move what stands behind the person, or retake against the backdrop"
        for place in ("left head", "right head", "left shoulder", "right shoulder", "above")
    },
}

ADVICE_TEXTS: dict[str, str] = {text: text for text in ADVICE.values()}
