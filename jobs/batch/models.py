"""Pydantic models of the `PATCH /phone-number/{id}` request body.

Hand-written from `simulator/spec/update-phone-number.openapi.yaml` and held to it by
`tests/test_models_fidelity.py`, which compares these models with the spec schema by
schema. Conventions:

- Attributes are snake_case; on the wire (input files and request bodies) only the API's
  camelCase names are accepted and produced.
- Every object is closed (`extra="forbid"`): an unknown field is an error, never dropped.
- Validation is strict: strings from CSV cells are coerced before they get here
  (`jobs.batch.coercion`), so a JSON `true` can never become the number 1.
- Optional fields have no `None` in their type: the API takes no nulls, and an absent
  field means "leave unchanged". Bodies are dumped with `exclude_unset`, so they carry
  exactly what the row set.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


def _number(value: object) -> int | float:
    # One rule and one message for the spec's `number`: an int stays an int (20, not 20.0),
    # and neither a bool nor a NaN slips through as a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_type", "expected a finite number")
    return value


Number: TypeAlias = Annotated[
    int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})
]

Language: TypeAlias = Literal[
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be",
    "bg", "bh", "bi", "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs",
    "cu", "cv", "cy", "da", "de", "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu",
    "fa", "ff", "fi", "fj", "fo", "fr", "fy", "ga", "gd", "gl", "gn", "gu", "gv", "ha",
    "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia", "id", "ie", "ig", "ii", "ik",
    "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk", "kl", "km", "kn",
    "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo", "lt",
    "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb",
    "nd", "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os",
    "pa", "pi", "pl", "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd",
    "se", "sg", "si", "sk", "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv",
    "sw", "ta", "te", "tg", "th", "ti", "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw",
    "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa", "wo", "xh", "yi", "yue", "yo",
    "za", "zh", "zu",
]  # fmt: skip

TransferMode: TypeAlias = Literal[
    "blind-transfer",
    "blind-transfer-add-summary-to-sip-header",
    "warm-transfer-say-message",
    "warm-transfer-say-summary",
    "warm-transfer-twiml",
    "warm-transfer-wait-for-operator-to-speak-first-and-then-say-message",
    "warm-transfer-wait-for-operator-to-speak-first-and-then-say-summary",
    "warm-transfer-experimental",
]
SipVerb: TypeAlias = Literal["refer", "bye", "dial"]
BackoffType: TypeAlias = Literal["fixed", "exponential"]
CallEndedReason: TypeAlias = Literal[
    "assistant-request-failed",
    "assistant-request-returned-error",
    "assistant-request-returned-unspeakable-error",
    "assistant-request-returned-invalid-assistant",
    "assistant-request-returned-no-assistant",
    "assistant-request-returned-forwarding-phone-number",
]
FreeObject: TypeAlias = dict[str, Any]


def unset() -> Any:
    """Default of an optional field: absent, never dumped (bodies use exclude_unset)."""
    return Field(default=None)


class ApiModel(BaseModel):
    """Base of every body model: closed, strict, and camelCase on the wire."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class TextContent(ApiModel):
    """One language's text of a message: an item of `CustomMessage.contents`."""

    type: Literal["text"]
    text: str
    language: Language


class CustomMessage(ApiModel):
    """A message as an object rather than plain text: `content`, or one per language."""

    contents: list[TextContent] = unset()
    type: Literal["custom-message"]
    content: str = unset()


def _message_kind(value: object) -> str:
    return "custom-message" if isinstance(value, dict | CustomMessage) else "text"


# The spec's `string | CustomMessage`: picked by the input's shape, so an error names the
# one branch the input meant instead of both.
Message: TypeAlias = Annotated[
    Annotated[str, Tag("text")] | Annotated[CustomMessage, Tag("custom-message")],
    Discriminator(_message_kind),
]


class ContextLastNMessages(ApiModel):
    """A `contextEngineeringPlan` that passes on only the last `maxMessages` messages."""

    type: Literal["lastNMessages"]
    max_messages: Number


class ContextNone(ApiModel):
    """A `contextEngineeringPlan` that passes on no messages of the call."""

    type: Literal["none"]


class ContextAll(ApiModel):
    """A `contextEngineeringPlan` that passes on every message (the API's default)."""

    type: Literal["all"]


ContextEngineeringPlan: TypeAlias = Annotated[
    ContextLastNMessages | ContextNone | ContextAll, Field(discriminator="type")
]


class SummaryPlan(ApiModel):
    """A transfer plan's `summaryPlan`: how the call summary for a warm transfer is made."""

    messages: list[FreeObject] = unset()
    enabled: bool = unset()
    timeout_seconds: Number = unset()


class TransferFallbackPlan(ApiModel):
    """A transfer plan's `fallbackPlan`: what the assistant says if the transfer fails."""

    message: Message
    end_call_enabled: bool = unset()


class TransferPlan(ApiModel):
    """A destination's `transferPlan`: how the call is handed over (blind or warm)."""

    mode: TransferMode
    message: Message = unset()
    timeout: Number = unset()
    sip_verb: SipVerb = unset()
    dial_timeout: Number = unset()
    hold_audio_url: str = unset()
    transfer_complete_audio_url: str = unset()
    context_engineering_plan: ContextEngineeringPlan = unset()
    twiml: str = unset()
    summary_plan: SummaryPlan = unset()
    sip_headers_in_refer_to_enabled: bool = unset()
    fallback_plan: TransferFallbackPlan = unset()


class NumberDestination(ApiModel):
    """A transfer destination that is a phone number (`type: number`)."""

    message: Message = unset()
    type: Literal["number"]
    number_e164_check_enabled: bool = unset()
    number: str
    extension: str = unset()
    caller_id: str = unset()
    transfer_plan: TransferPlan = unset()
    description: str = unset()


class SipDestination(ApiModel):
    """A transfer destination that is a SIP URI (`type: sip`)."""

    message: Message = unset()
    type: Literal["sip"]
    sip_uri: str
    caller_id: str = unset()
    transfer_plan: TransferPlan = unset()
    sip_headers: FreeObject = unset()
    description: str = unset()


Destination: TypeAlias = Annotated[NumberDestination | SipDestination, Field(discriminator="type")]


class TransferHookAction(ApiModel):
    """A hook action that transfers the call to a destination (`type: transfer`)."""

    type: Literal["transfer"]
    destination: Destination = unset()


class SayHookAction(ApiModel):
    """A hook action that says the `exact` text (`type: say`)."""

    type: Literal["say"]
    exact: str


HookAction: TypeAlias = Annotated[TransferHookAction | SayHookAction, Field(discriminator="type")]


class CallRingingFilter(ApiModel):
    """A `call.ringing` hook's filter: callers whose number starts with a given prefix."""

    type: Literal["startsWith"]
    key: Literal["number"]
    starts_with: list[str]


class CallRingingHook(ApiModel):
    """An item of `hooks` run when an inbound call rings (`on: call.ringing`)."""

    on: Literal["call.ringing"]
    filters: list[CallRingingFilter] = unset()
    do: list[HookAction]


class CallEndingFilter(ApiModel):
    """A `call.ending` hook's filter: the ended reason it fires for."""

    type: Literal["oneOf"]
    key: Literal["call.endedReason"]
    one_of: CallEndedReason


class CallEndingHook(ApiModel):
    """An item of `hooks` run as a call ends (`on: call.ending`), filtered by ended reason."""

    on: Literal["call.ending"]
    filters: list[CallEndingFilter] = unset()
    do: HookAction = unset()


Hook: TypeAlias = Annotated[CallRingingHook | CallEndingHook, Field(discriminator="on")]


class BackoffPlan(ApiModel):
    """`server.backoffPlan`: how Vapi retries a webhook request that fails."""

    type: BackoffType
    max_retries: Number
    base_delay_seconds: Number
    excluded_status_codes: list[FreeObject] = unset()


class Server(ApiModel):
    """The `server` field: where Vapi sends the number's webhooks, and how."""

    timeout_seconds: Number = unset()
    credential_id: str = unset()
    static_ip_addresses_enabled: bool = unset()
    encrypted_paths: list[str] = unset()
    url: str = unset()
    headers: FreeObject = unset()
    backoff_plan: BackoffPlan = unset()


class SipAuthentication(ApiModel):
    """A Vapi number's `authentication`: what incoming SIP INVITEs to `sipUri` must give."""

    realm: str = unset()
    username: str
    password: str


class _CommonUpdate(ApiModel):
    """Fields every provider's update takes."""

    fallback_destination: Destination = unset()
    hooks: list[Hook] = unset()
    name: str = unset()
    assistant_id: str = unset()
    workflow_id: str = unset()
    squad_id: str = unset()
    server: Server = unset()


class ByoPhoneNumberUpdate(_CommonUpdate):
    """The PATCH body for a bring-your-own number (`provider: byo-phone-number`)."""

    provider: Literal["byo-phone-number"]
    number_e164_check_enabled: bool = unset()
    number: str = unset()
    credential_id: str = unset()


class TwilioPhoneNumberUpdate(_CommonUpdate):
    """The PATCH body for a Twilio number (`provider: twilio`)."""

    provider: Literal["twilio"]
    sms_enabled: bool = unset()
    number: str = unset()
    twilio_account_sid: str = unset()
    twilio_auth_token: str = unset()
    twilio_api_key: str = unset()
    twilio_api_secret: str = unset()


class VonagePhoneNumberUpdate(_CommonUpdate):
    """The PATCH body for a Vonage number (`provider: vonage`)."""

    provider: Literal["vonage"]
    number: str = unset()
    credential_id: str = unset()


class VapiPhoneNumberUpdate(_CommonUpdate):
    """The PATCH body for a Vapi SIP number (`provider: vapi`)."""

    provider: Literal["vapi"]
    sip_uri: str = unset()
    authentication: SipAuthentication = unset()


class TelnyxPhoneNumberUpdate(_CommonUpdate):
    """The PATCH body for a Telnyx number (`provider: telnyx`)."""

    provider: Literal["telnyx"]
    number: str = unset()
    credential_id: str = unset()


PhoneNumberUpdate: TypeAlias = Annotated[
    ByoPhoneNumberUpdate
    | TwilioPhoneNumberUpdate
    | VonagePhoneNumberUpdate
    | VapiPhoneNumberUpdate
    | TelnyxPhoneNumberUpdate,
    Field(discriminator="provider"),
]

UPDATE_MODELS: dict[str, type[_CommonUpdate]] = {
    "byo-phone-number": ByoPhoneNumberUpdate,
    "twilio": TwilioPhoneNumberUpdate,
    "vonage": VonagePhoneNumberUpdate,
    "vapi": VapiPhoneNumberUpdate,
    "telnyx": TelnyxPhoneNumberUpdate,
}
PROVIDERS: tuple[str, ...] = tuple(UPDATE_MODELS)

phone_number_update = TypeAdapter[Any](PhoneNumberUpdate)


def wire_fields(model: type[BaseModel]) -> dict[str, str]:
    """The model's fields by their API name: API name -> attribute name."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def dump_body(update: BaseModel) -> dict[str, Any]:
    """The request body: API names, and only the fields the input set."""
    body: dict[str, Any] = update.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return body
