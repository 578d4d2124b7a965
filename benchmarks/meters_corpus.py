"""Text the meters' benchmark tokenizes: prose in seven scripts, code, and honest oddities.

The prose was written for this benchmark (plain, natural sentences on everyday
topics, the kind an assistant answers with), so it can ship with the repository;
code and JSON come from the repository itself. The "oddities" are things an
honest model does emit -- hex, identifiers, single letters, emoji runs -- and show
why no ratio below one token per byte is safe for every text.
"""

# ruff: noqa: RUF001  (the prose is in other scripts on purpose)
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ENGLISH = (
    "A payment channel lets two parties settle many small payments with only two "
    "transactions on chain: one to open the channel and lock a deposit, and one to close "
    "it. In between, the payer signs vouchers that each state the total amount owed so "
    "far. The payee keeps the latest voucher, because it is worth the most, and can cash "
    "it at any time. If you are building an assistant that pays for every word it reads, "
    "this is the cheapest way to do it: the signatures are free, the network is only "
    "involved twice, and neither side has to trust the other for more than one voucher "
    "at a time. The weather tomorrow will be mild, with a light breeze from the west and "
    "a chance of rain in the late afternoon, so take an umbrella if you go out.\n\n"
    "Here are three things to check before you sign anything:\n"
    "1. The price per token is what you agreed to.\n"
    "2. The amount asked for matches what you actually received.\n"
    "3. The receipt names the channel you opened, not another one.\n"
)

GERMAN = (
    "Ein Zahlungskanal erlaubt es zwei Parteien, viele kleine Zahlungen mit nur zwei "
    "Transaktionen auf der Blockchain abzuwickeln: eine, um den Kanal zu eröffnen und eine "
    "Einlage zu hinterlegen, und eine, um ihn zu schließen. Dazwischen unterschreibt der "
    "Zahler Gutscheine, die jeweils den bisher geschuldeten Gesamtbetrag nennen. Der "
    "Empfänger behält den neuesten Gutschein, weil er am meisten wert ist, und kann ihn "
    "jederzeit einlösen. Morgen wird es überwiegend freundlich, mit einer leichten Brise "
    "aus Westen und gelegentlichen Schauern am späten Nachmittag. Vergessen Sie also "
    "Ihren Regenschirm nicht, wenn Sie zum Bäcker gehen. Übrigens: Die Straßenbahnlinie "
    "fährt wegen Bauarbeiten bis Donnerstag nur im Zwanzigminutentakt."
)

CHINESE = (
    "支付通道让双方只需在链上进行两笔交易，就能完成许多笔小额支付：一笔用于开启通道并锁定押金，"
    "另一笔用于关闭通道。在这之间，付款方签署凭证，每张凭证都写明到目前为止的欠款总额。"
    "收款方保留最新的凭证，因为它的金额最大，并且可以随时兑现。如果你正在开发一个按字付费的助手，"
    "这是最便宜的方式：签名不花钱，网络只参与两次，双方都不必在超过一张凭证的范围内信任对方。"
    "明天天气温和，西风微弱，傍晚可能有阵雨，出门记得带伞。另外，由于施工，地铁二号线周末停运。"
)

JAPANESE = (
    "支払いチャネルを使うと、二者はチェーン上のわずか二つの取引で多数の少額支払いを精算できます。"
    "一つはチャネルを開いて預託金をロックするため、もう一つはそれを閉じるためです。その間、"
    "支払者はこれまでの支払総額を記したバウチャーに署名します。受取人は最新のバウチャーを保管し、"
    "いつでも換金できます。明日は穏やかな天気で、西からそよ風が吹き、夕方には雨が降るかもしれません。"
    "お出かけの際は傘を持っていくと安心です。ちなみに、駅前の新しいラーメン屋さんはとても人気があります。"
)

RUSSIAN = (
    "Платёжный канал позволяет двум сторонам провести множество мелких платежей всего "
    "двумя транзакциями в блокчейне: одной, чтобы открыть канал и заблокировать депозит, "
    "и другой, чтобы его закрыть. В промежутке плательщик подписывает ваучеры, в каждом "
    "из которых указана общая сумма долга на данный момент. Получатель хранит последний "
    "ваучер, потому что он самый ценный, и может обналичить его в любое время. Завтра "
    "будет тепло, с лёгким западным ветром и возможным дождём ближе к вечеру, так что "
    "возьмите зонт, если пойдёте гулять."
)

ARABIC = (
    "تتيح قناة الدفع لطرفين تسوية العديد من المدفوعات الصغيرة بمعاملتين فقط على السلسلة: "
    "واحدة لفتح القناة وحجز الوديعة، وأخرى لإغلاقها. وفي الفترة بينهما يوقّع الدافع قسائم "
    "تذكر كل منها المبلغ الإجمالي المستحق حتى تلك اللحظة. ويحتفظ المستفيد بأحدث قسيمة لأنها "
    "الأعلى قيمة، ويمكنه صرفها في أي وقت. سيكون الطقس غداً معتدلاً مع نسيم خفيف من الغرب "
    "واحتمال هطول أمطار في وقت متأخر من بعد الظهر، لذا خذ مظلتك معك إذا خرجت."
)

EMOJI_CHAT = (
    "Great news! 🎉 Your order has shipped 📦 and should arrive on Friday 🚚. "
    "Thanks for shopping with us 😊🙏 — see you soon! ☀️🌈 "
    "P.S. the team says hi 👋👩‍💻👨‍🍳 and wishes you a happy birthday 🎂🥳🎈!"
)

EMOJI_RUN = (
    "😀😃😄😁😆😅🤣😂🙂🙃😉😊😇🥰😍🤩😘😗😚😙🥲😋😛😜"
    "🤪😝🤑🤗🤭🫢🫣🤫🤔🫡🤐🤨😐😑😶🫥😶‍🌫️😏😒🙄😬😮‍💨🤥🫨"
)


def python_code() -> str:
    """Real Python: the meters module itself."""
    return (ROOT / "mppagent/llm/meters.py").read_text(encoding="utf-8")


def json_abi() -> str:
    """Real JSON: the escrow contract's ABI, pretty-printed as a model would write it."""
    artifact = json.loads(
        (ROOT / "mppagent/tempo/artifacts/TempoStreamChannel.json").read_text(encoding="utf-8")
    )
    return json.dumps(artifact["abi"][:12], indent=2)


def json_compact() -> str:
    """Compact JSON with short keys and numbers: a tool call's arguments."""
    rows = [{"id": i, "ok": i % 3 == 0, "x": i * 7 % 101, "tag": f"t{i}"} for i in range(60)]
    return json.dumps(rows, separators=(",", ":"))


def hex_digest() -> str:
    """Hex: hashes and addresses, which a model quoting a transaction emits."""
    return " ".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(12))


def base64_blob() -> str:
    """Base64 of pseudo-random bytes."""
    return base64.b64encode(hashlib.sha512(b"meters").digest() * 8).decode()


def letters() -> str:
    """Single letters and digits separated by spaces (a spelled-out code)."""
    return " ".join("a1b2c3d4e5f6g7h8i9j0kxlymznqpwrvstu" * 6)


def punctuation() -> str:
    """Runs of punctuation and operators (ASCII art, regexes)."""
    return r"""^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[[(?:\d{1,3}\.){3}]]|<-->|=>>|::/~~|""" * 8


def samples() -> dict[str, str]:
    """Every sample by name, prose first."""
    return {
        "English": ENGLISH,
        "German": GERMAN,
        "Chinese": CHINESE,
        "Japanese": JAPANESE,
        "Russian": RUSSIAN,
        "Arabic": ARABIC,
        "emoji chat": EMOJI_CHAT,
        "emoji run": EMOJI_RUN,
        "Python": python_code(),
        "JSON (ABI)": json_abi(),
        "JSON (compact)": json_compact(),
        "hex": hex_digest(),
        "base64": base64_blob(),
        "letters": letters(),
        "punctuation": punctuation(),
    }
