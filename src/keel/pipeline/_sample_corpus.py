"""A fictional company's knowledge base for `keel demo`: written by Keel, the same for every seed.

ACME Outfitters sells a dozen products. The corpus has what a real intranet export has: product
pages as HTML, policies as Markdown, support tickets as JSON lines with customers' e-mail
addresses, phone numbers and card numbers in them, the same policy published under two URLs, lightly
edited copies, navigation-only junk pages and a few pages in German, French and Spanish.

Supervised fine-tuning pairs are built from the *curated* product pages (`sft_pairs`: the facts are read
back out of each page's text, and every pair names the record it came from), so a served answer traces
back through the training data to the page it was learned from. The held-out evaluation set asks about
the same facts in other words, with answers from the generator's own facts.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PRODUCTS", "SampleCorpus", "Product", "sft_pairs", "write_sample_corpus"]


@dataclass(frozen=True)
class Product:
    """One product and the facts the knowledge base states about it."""

    slug: str
    name: str
    kind: str
    price: int
    warranty_years: int
    ships_in_days: int
    weight_kg: float
    color: str


PRODUCTS: tuple[Product, ...] = (
    Product("trail-tent", "Summit Trail Tent", "two-person tent", 289, 3, 2, 2.4, "forest green"),
    Product("ridge-pack", "Ridge 40 Backpack", "40-litre backpack", 149, 5, 1, 1.3, "slate grey"),
    Product("ember-stove", "Ember Camp Stove", "gas camp stove", 89, 2, 3, 0.9, "brushed steel"),
    Product("glacier-bag", "Glacier Sleeping Bag", "down sleeping bag", 239, 4, 2, 1.1, "midnight blue"),
    Product("canyon-boots", "Canyon Hiking Boots", "waterproof hiking boot", 179, 1, 4, 1.6, "desert tan"),
    Product("aurora-lamp", "Aurora Headlamp", "rechargeable headlamp", 45, 2, 1, 0.1, "signal orange"),
    Product("delta-filter", "Delta Water Filter", "hollow-fibre water filter", 39, 1, 2, 0.2, "clear"),
    Product("harbor-kayak", "Harbor Folding Kayak", "folding kayak", 1199, 6, 7, 12.5, "coral red"),
    Product("pine-chair", "Pine Camp Chair", "folding camp chair", 69, 2, 2, 1.0, "charcoal"),
    Product("nimbus-jacket", "Nimbus Rain Jacket", "three-layer rain jacket", 199, 3, 1, 0.4, "lime"),
    Product("solstice-poles", "Solstice Trekking Poles", "carbon trekking pole pair", 129, 2, 2, 0.5, "black"),
    Product("tundra-cooler", "Tundra Cooler 30", "30-litre hard cooler", 259, 5, 5, 7.8, "sand"),
)

_FIRST = ("Jane", "Omar", "Li", "Priya", "Tomas", "Aiko", "Grace", "Mateo", "Nora", "Sven", "Amara", "Felix")
_LAST = ("Doe", "Haddad", "Wei", "Raman", "Novak", "Sato", "Okafor", "Garcia", "Lind", "Berg", "Mensah", "Vogel")

_POLICIES = {
    "refunds": (
        "Refund policy",
        "ACME Outfitters refunds any unused item returned within 30 days of delivery. Refunds go back to the "
        "original payment method within 5 business days of the return reaching our warehouse. Items that were "
        "used outdoors can be exchanged but not refunded. Gift cards are not refundable.",
    ),
    "shipping": (
        "Shipping policy",
        "We ship to the United States, Canada and the European Union. Orders over 100 dollars ship free. "
        "Standard delivery takes the product's listed dispatch time plus 3 to 5 days in transit. Kayaks and "
        "coolers ship by freight and need a signature on delivery.",
    ),
    "warranty": (
        "Warranty claims",
        "Every ACME product carries a warranty against defects in materials and workmanship for the number of "
        "years listed on its product page. To claim, send the order number and a photo of the defect to the "
        "support team. Damage from misuse, fire or normal wear is not covered.",
    ),
    "privacy": (
        "Customer data and privacy",
        "ACME keeps order records for seven years for tax purposes and deletes support conversations after two "
        "years. Customers can ask for a copy of their data or for its erasure by writing to the privacy office. "
        "We never sell customer data.",
    ),
}

_FOREIGN = (
    ("de", "Rückgaberecht", "Unbenutzte Artikel können innerhalb von 30 Tagen nach Lieferung zurückgegeben werden. "
     "Die Erstattung erfolgt innerhalb von fünf Werktagen auf das ursprüngliche Zahlungsmittel."),
    ("fr", "Politique de retour", "Les articles non utilisés peuvent être retournés dans les 30 jours suivant la "
     "livraison. Le remboursement est effectué sous cinq jours ouvrés sur le moyen de paiement d'origine."),
    ("es", "Política de devoluciones", "Los artículos sin usar se pueden devolver dentro de los 30 días "
     "posteriores a la entrega. El reembolso se realiza en cinco días hábiles al método de pago original."),
)  # fmt: skip

# Training questions and held-out questions ask for the same facts in different words.
_TRAIN_QUESTIONS = {
    "warranty": ("How long is the warranty on the {name}?", "What warranty does the {name} come with?"),
    "price": ("How much does the {name} cost?", "What is the price of the {name}?"),
    "ships": ("How quickly does the {name} ship?", "When will the {name} be dispatched?"),
    "weight": ("How much does the {name} weigh?", "What is the weight of the {name}?"),
    "color": ("What colour is the {name}?", "Which colour does the {name} come in?"),
}
_EVAL_QUESTIONS = {
    "warranty": "For how many years is the {name} covered by warranty?",
    "price": "What does the {name} sell for?",
    "ships": "How many days until the {name} leaves the warehouse?",
    "weight": "Is the {name} heavy? How many kilograms?",
    "color": "In what colour is the {name} sold?",
}


_ANSWERS = {
    "warranty": "The {name} comes with a {value}-year warranty.",
    "price": "The {name} costs {value} dollars.",
    "ships": "The {name} ships within {value} business days.",
    "weight": "The {name} weighs {value} kg.",
    "color": "The {name} comes in {value}.",
}
# How a product page states each fact (see `_product_page`); `sft_pairs` reads them back from curated text.
_PAGE_FACTS = {
    "warranty": re.compile(r"(\d+)-year warranty"),
    "price": re.compile(r"costs (\d+) dollars"),
    "ships": re.compile(r"ships within (\d+) business days"),
    "weight": re.compile(r"weighs ([\d.]+) kg"),
    "color": re.compile(r"It comes in ([^.]+)\."),
}


def _answer(p: Product, fact: str) -> str:
    value = {"warranty": p.warranty_years, "price": p.price, "ships": p.ships_in_days, "weight": p.weight_kg}
    return _ANSWERS[fact].format(name=p.name, value=value.get(fact, p.color))


def sft_pairs(records: Iterable[tuple[str, str]]) -> list[dict[str, object]]:
    """Chat pairs (two questions per fact) from the product pages among `(record id, text)` records.

    A product page is a record whose first line is a product's name and whose text states all five facts;
    other records (policies, tickets) give no pairs. Each pair keeps the id of its page as `kb_record`.
    """
    pairs: list[dict[str, object]] = []
    for record_id, text in records:
        name = text.split("\n", 1)[0].strip()
        matches = {fact: pattern.search(text) for fact, pattern in _PAGE_FACTS.items()}
        values = {fact: m.group(1) for fact, m in matches.items() if m is not None}
        if not name or len(values) < len(_PAGE_FACTS):
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        for fact, questions in _TRAIN_QUESTIONS.items():
            answer = _ANSWERS[fact].format(name=name, value=values[fact])
            for i, question in enumerate(questions):
                messages = [
                    {"role": "user", "content": question.format(name=name)},
                    {"role": "assistant", "content": answer},
                ]
                pairs.append({"id": f"sft-{slug}-{fact}-{i}", "messages": messages, "kb_record": record_id})
    return pairs


def _product_paragraphs(p: Product) -> list[str]:
    return [
        f"The {p.name} is a {p.kind} built for long trips and hard weather. "
        f"It costs {p.price} dollars and weighs {p.weight_kg} kg. It comes in {p.color}.",
        f"The {p.name} ships within {p.ships_in_days} business days and comes with a {p.warranty_years}-year "
        f"warranty against defects in materials and workmanship.",
        f"Every {p.kind} is tested in our workshop before it leaves the warehouse, and spare parts are "
        "available for as long as the warranty lasts.",
    ]


def _product_text(p: Product) -> str:
    """A product page as curation extracts it: the title and the main text, no markup or navigation."""
    return "\n\n".join([p.name, *_product_paragraphs(p)])


def _product_page(p: Product) -> str:
    paragraphs = "".join(f"<p>{text}</p>" for text in _product_paragraphs(p))
    return (
        f"<html><head><title>{p.name} | ACME Outfitters</title></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/shop'>Shop</a> | <a href='/help'>Help</a></nav>"
        f"<main><h1>{p.name}</h1>{paragraphs}</main>"
        "<footer>© ACME Outfitters. All rights reserved.</footer></body></html>"
    )


def _ticket(rng: random.Random, number: int) -> dict[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    product = rng.choice(PRODUCTS)
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com"
    phone = f"+1 415 555 {rng.randint(100, 199):04d}"
    asks = rng.choice(
        (
            f"My {product.name} arrived with a torn seam. Can I claim the warranty? Order {70000 + number}.",
            f"I would like to return the {product.name}; it is unused. How long do refunds take?",
            f"Does the {product.name} ship to Canada, and how long does delivery take?",
            f"The {product.name} I ordered has not shipped yet after a week. Please check order {70000 + number}.",
        )
    )
    contact = rng.choice(
        (
            f"You can reach me at {email} or {phone}.",
            f"Email me at {email}.",
            f"Call me on {phone}. My card was 4111 1111 1111 1111 if you need to find the payment.",
        )
    )
    return {
        "id": f"ticket-{number}",
        "text": f"{asks} {contact} Thanks, {first}",
        "url": f"https://help.acme.example/tickets/{number}",
    }


@dataclass(frozen=True)
class SampleCorpus:
    """Where the generated files are and how many of each kind were written."""

    root: Path
    raw_dir: Path
    eval_path: Path
    counts: dict[str, int]


def write_sample_corpus(root: str | Path, *, seed: int = 0, tickets: int = 120) -> SampleCorpus:
    """Write the knowledge base under `root/raw` and the held-out eval cases to `root/eval.jsonl`."""
    rng = random.Random(seed)
    root = Path(root)
    raw = root / "raw"
    (raw / "pages").mkdir(parents=True, exist_ok=True)
    (raw / "policies").mkdir(parents=True, exist_ok=True)
    counts = {"product_pages": 0, "policies": 0, "tickets": 0, "duplicates": 0, "near_duplicates": 0, "junk": 0}
    for p in PRODUCTS:
        (raw / "pages" / f"{p.slug}.html").write_text(_product_page(p), encoding="utf-8")
        counts["product_pages"] += 1
    # The backpack page is mirrored under a second URL: an exact duplicate.
    (raw / "pages" / "ridge-pack-mirror.html").write_text(_product_page(PRODUCTS[1]), encoding="utf-8")
    counts["duplicates"] += 1
    for slug, (title, body) in _POLICIES.items():
        (raw / "policies" / f"{slug}.md").write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
        counts["policies"] += 1
    (raw / "policies" / "refunds-copy.md").write_text(f"# {_POLICIES['refunds'][0]}\n\n{_POLICIES['refunds'][1]}\n")
    counts["duplicates"] += 1
    # A re-post of the shipping policy with one sentence added (word-5-gram Jaccard 0.92): a near-duplicate. Its
    # file sorts after the original's, so curation keeping the first in input order keeps the original.
    title, body = _POLICIES["shipping"]
    (raw / "policies" / "updated-shipping.md").write_text(
        f"# {title}\n\n{body} Reviewed in January 2025.\n", encoding="utf-8"
    )
    counts["near_duplicates"] += 1
    for lang, title, body in _FOREIGN:
        (raw / "policies" / f"returns-{lang}.md").write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
        counts["policies"] += 1
    for i, junk in enumerate(("Home | Shop | Help | Login", "lorem ipsum " * 3, "404 Not Found", "Loading...")):
        (raw / "pages" / f"junk-{i}.html").write_text(f"<html><body><nav>{junk}</nav></body></html>", encoding="utf-8")
        counts["junk"] += 1
    with open(raw / "tickets.jsonl", "w", encoding="utf-8") as out:
        for number in range(4400, 4400 + tickets):
            out.write(json.dumps(_ticket(rng, number)) + "\n")
            counts["tickets"] += 1
    eval_path = root / "eval.jsonl"
    with open(eval_path, "w", encoding="utf-8") as ev:
        for p in PRODUCTS:
            context = _product_text(p)  # what the curated knowledge base holds, not the raw HTML
            for fact in _TRAIN_QUESTIONS:
                case = {
                    "id": f"eval-{p.slug}-{fact}",
                    "input": _EVAL_QUESTIONS[fact].format(name=p.name),
                    "expected": _answer(p, fact),
                    "contexts": [context],
                    "labels": fact,
                }
                ev.write(json.dumps(case) + "\n")
    counts["eval_cases"] = len(PRODUCTS) * len(_EVAL_QUESTIONS)
    return SampleCorpus(root, raw, eval_path, counts)
