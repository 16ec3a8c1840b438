//! The WhatsApp Cloud API shapes Parley reads: the webhook's `messages` and
//! `phone_number_quality_update` changes, and the Graph API's answers to sends, phone-number,
//! template and media requests. Every field Parley does not read is ignored, and every field
//! the platform may leave out is an `Option`.
//!
//! Sources: Meta's WhatsApp Cloud API reference, "Webhooks: messages"
//! (<https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components>), "Messages"
//! (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>), "Phone
//! Numbers" (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/phone-numbers>),
//! "Message Templates"
//! (<https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/message_templates>)
//! and "Media" (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media>).

use parley_core::Timestamp;
use serde::Deserialize;
use serde_json::Number;

use super::super::WithRaw;
pub use super::super::meta::GraphError;

/// A webhook delivery: `{"object": "whatsapp_business_account", "entry": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Webhook {
    /// One entry per WhatsApp Business Account.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// `entry[]`: a WhatsApp Business Account's changes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Entry {
    /// The changes, in order.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// `entry[].changes[]`: what changed (`field`) and how (`value`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Change {
    /// `messages`, `phone_number_quality_update`, `message_template_status_update`...
    pub field: Option<String>,
    /// The change's object; its fields depend on `field`.
    #[serde(default)]
    pub value: ChangeValue,
}

/// `changes[].value`: the fields of a `messages` change and of a `phone_number_quality_update`
/// change (each leaves the other's out).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChangeValue {
    /// Which business number the change is about (`messages`).
    pub metadata: Option<Metadata>,
    /// The customers who wrote (`messages`).
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Inbound messages, each kept also as it came (its objects go to `meta.channel.details`).
    #[serde(default)]
    pub messages: Vec<WithRaw<InboundMessage>>,
    /// Delivery statuses of messages the business sent.
    #[serde(default)]
    pub statuses: Vec<Status>,
    /// A quality update's event (`FLAGGED`, `UPGRADE`, `DOWNGRADE`...).
    pub event: Option<String>,
    /// A quality update's messaging limit tier (`TIER_1K`...).
    pub current_limit: Option<String>,
}

/// `value.metadata`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// The business phone number's id (a connection's `external_key`).
    pub phone_number_id: Option<String>,
}

/// `value.contacts[]`: a customer's WhatsApp id and profile.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Contact {
    /// The customer's WhatsApp id (their number), matching a message's `from`.
    pub wa_id: Option<String>,
    /// `{"name"}`.
    pub profile: Option<Profile>,
}

/// `contacts[].profile`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    /// The customer's profile name.
    pub name: Option<String>,
}

/// A unix time in seconds, as WhatsApp sends it (a string; a number is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime(pub Option<i64>);

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(Number),
            Other(serde::de::IgnoredAny),
        }
        Ok(UnixTime(match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().ok(),
            Raw::Number(n) => n.as_i64(),
            Raw::Other(_) => None,
        }))
    }
}

impl UnixTime {
    /// The time in ms; `None` when missing or out of range.
    pub fn timestamp(t: Option<UnixTime>) -> Option<Timestamp> {
        Some(Timestamp(t?.0?.checked_mul(1000)?))
    }
}

/// `value.messages[]`: one inbound message. `type` names the object that carries its content
/// (`text`, `image`, ..., `edit`, `revoke`, `system`, `unsupported`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundMessage {
    /// The customer's WhatsApp id.
    pub from: Option<String>,
    /// The message's `wamid`.
    pub id: Option<String>,
    /// When it was sent (unix seconds).
    pub timestamp: Option<UnixTime>,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The message it answers (`{"from", "id"}`).
    pub context: Option<Context>,
    /// `text`: `{"body"}`.
    pub text: Option<Text>,
    /// `image`.
    pub image: Option<Media>,
    /// `audio` (a voice note when `voice` is true).
    pub audio: Option<Media>,
    /// `video`.
    pub video: Option<Media>,
    /// `document`.
    pub document: Option<Media>,
    /// `sticker`.
    pub sticker: Option<Media>,
    /// `location`.
    pub location: Option<Location>,
    /// `contacts`: shared contact cards.
    pub contacts: Option<Vec<SharedContact>>,
    /// `interactive`: a button or list reply.
    pub interactive: Option<Interactive>,
    /// `button`: a template's quick-reply button.
    pub button: Option<Button>,
    /// `reaction`.
    pub reaction: Option<Reaction>,
    /// `order`: a cart from the catalogue.
    pub order: Option<Order>,
    /// `edit`: the customer edited an earlier message.
    pub edit: Option<Edit>,
    /// `revoke`: the customer deleted an earlier message.
    pub revoke: Option<Revoke>,
    /// `system`: a notice about the customer (a changed number).
    pub system: Option<Text>,
    /// Why the message could not be handled (`unsupported`).
    pub errors: Option<Vec<GraphError>>,
}

impl InboundMessage {
    /// The media object of a media type (`image`, `audio`, `video`, `document`, `sticker`).
    pub fn media(&self, kind: &str) -> Option<&Media> {
        match kind {
            "image" => self.image.as_ref(),
            "audio" => self.audio.as_ref(),
            "video" => self.video.as_ref(),
            "document" => self.document.as_ref(),
            "sticker" => self.sticker.as_ref(),
            _ => None,
        }
    }
}

/// `context`: the message an inbound message replies to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Context {
    /// Its `wamid`.
    pub id: Option<String>,
}

/// `text` (`{"body"}`) and `system` (`{"body", "type", "wa_id"}`) objects.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Text {
    /// The text.
    pub body: Option<String>,
}

/// A media object: `{"id", "mime_type", "sha256", "caption", "filename", "voice"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Media {
    /// The media id to download it with.
    pub id: Option<String>,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// A document's file name.
    pub filename: Option<String>,
    /// The caption the customer wrote.
    pub caption: Option<String>,
    /// `true` for a voice note (`audio`).
    pub voice: Option<bool>,
}

/// `location`: `{"latitude", "longitude", "name", "address"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Location {
    /// Degrees.
    pub latitude: Option<Number>,
    /// Degrees.
    pub longitude: Option<Number>,
    /// The place's name.
    pub name: Option<String>,
    /// The place's address.
    pub address: Option<String>,
}

/// One shared contact card (`contacts[]` of a `contacts` message).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SharedContact {
    /// `{"formatted_name", "first_name", ...}`.
    pub name: Option<ContactName>,
    /// `[{"phone", "type", "wa_id"}]`.
    pub phones: Option<Vec<Phone>>,
}

/// A shared contact's `name`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactName {
    /// The full name as shown.
    pub formatted_name: Option<String>,
}

/// A shared contact's `phones[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Phone {
    /// The number as written.
    pub phone: Option<String>,
}

/// `interactive`: `{"type": "button_reply" | "list_reply" | ..., "<type>": {"id", "title"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Interactive {
    /// Which reply object is set.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A reply button's choice.
    pub button_reply: Option<Reply>,
    /// A list's choice.
    pub list_reply: Option<Reply>,
}

impl Interactive {
    /// The chosen reply named by `type`.
    pub fn reply(&self) -> Option<&Reply> {
        match self.kind.as_deref() {
            Some("button_reply") => self.button_reply.as_ref(),
            Some("list_reply") => self.list_reply.as_ref(),
            _ => None,
        }
    }
}

/// A button or list reply: `{"id", "title"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reply {
    /// The option's title as the customer saw it.
    pub title: Option<String>,
}

/// `button`: `{"text", "payload"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Button {
    /// The button's text.
    pub text: Option<String>,
}

/// `reaction`: `{"message_id", "emoji"}` (no or an empty emoji: the reaction was removed).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reaction {
    /// The `wamid` reacted to.
    pub message_id: Option<String>,
    /// The emoji.
    pub emoji: Option<String>,
}

/// `order`: `{"catalog_id", "text", "product_items": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Order {
    /// The items ordered.
    pub product_items: Option<Vec<ProductItem>>,
}

/// `order.product_items[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductItem {
    /// The product's id in the catalogue.
    pub product_retailer_id: Option<String>,
    /// How many.
    pub quantity: Option<Number>,
    /// The unit price.
    pub item_price: Option<Number>,
    /// ISO 4217 code.
    pub currency: Option<String>,
}

/// `edit`: `{"original_message_id", "message": {...the new message}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Edit {
    /// The `wamid` of the message edited.
    pub original_message_id: Option<String>,
    /// The message as it is now.
    pub message: Option<Box<WithRaw<InboundMessage>>>,
}

/// `revoke`: `{"original_message_id"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Revoke {
    /// The `wamid` of the message deleted.
    pub original_message_id: Option<String>,
}

/// `value.statuses[]`: `{"id", "status", "timestamp", "recipient_id", "errors"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// The `wamid` of the message the business sent.
    pub id: Option<String>,
    /// `sent`, `delivered`, `read`, `played`, `failed`.
    pub status: Option<String>,
    /// When (unix seconds).
    pub timestamp: Option<UnixTime>,
    /// Why it failed.
    #[serde(default)]
    pub errors: Vec<GraphError>,
}

/// The answer to `POST /{phone-number-id}/messages`: `{"messages": [{"id"}], "contacts"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SendAnswer {
    /// The message sent, with its `wamid`.
    #[serde(default)]
    pub messages: Vec<Sent>,
}

/// `messages[]` of a [`SendAnswer`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sent {
    /// The new message's `wamid`.
    pub id: Option<String>,
}

/// `GET /{phone-number-id}?fields=id,...,quality_rating,messaging_limit_tier`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PhoneNumber {
    /// The phone number id.
    pub id: Option<String>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`.
    pub quality_rating: Option<String>,
    /// `TIER_250`, `TIER_1K`...
    pub messaging_limit_tier: Option<String>,
}

/// A page of a Graph API list (`{"data": [...], "paging": {"cursors": {"after"}, "next"}}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// This page's items.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    /// Where the next page starts.
    pub paging: Option<Paging>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            data: Vec::new(),
            paging: None,
        }
    }
}

impl<T> Page<T> {
    /// The `after` cursor of the next page, when there is one (`next` is set).
    pub fn after(&self) -> Option<&str> {
        let paging = self.paging.as_ref()?;
        paging.next.as_ref()?;
        paging.cursors.as_ref()?.after.as_deref()
    }
}

/// `paging` of a [`Page`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Paging {
    /// `{"before", "after"}`.
    pub cursors: Option<Cursors>,
    /// The next page's URL (absent on the last page).
    pub next: Option<String>,
}

/// `paging.cursors`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cursors {
    /// The cursor after this page.
    pub after: Option<String>,
}

/// A listed phone number (`GET /{waba-id}/phone_numbers?fields=id`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Listed {
    /// Its id.
    pub id: Option<String>,
}

/// A message template (`GET /{waba-id}/message_templates?fields=name,language,status,category,components`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageTemplate {
    /// Its name.
    pub name: Option<String>,
    /// Its language code.
    pub language: Option<String>,
    /// `APPROVED`, `PENDING`, `REJECTED`...
    pub status: Option<String>,
    /// `MARKETING`, `UTILITY`, `AUTHENTICATION`.
    pub category: Option<String>,
    /// `HEADER`, `BODY`, `FOOTER`, `BUTTONS` components.
    pub components: Option<Vec<TemplateComponent>>,
}

/// `components[]` of a [`MessageTemplate`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateComponent {
    /// `BODY`, `HEADER`...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The component's text, with `{{n}}` placeholders.
    pub text: Option<String>,
}

/// `GET /{media-id}`: `{"url", "mime_type", "sha256", "file_size", "id"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MediaInfo {
    /// A short-lived download URL.
    pub url: Option<String>,
}
