"""A small text classification task from the demo's knowledge base: the intent of a support ticket.

The demo's tickets (`_sample_corpus._ticket`) ask one of four things in one wording each; this task writes
tickets about the same twelve ACME products and the same four policies (refunds, shipping, warranty,
privacy) in many wordings, six intents with uneven frequencies (as real queues have: most tickets ask about
delivery, few about personal data), with the words that make keyword rules disagree (an order-status ticket
says "shipped", an exchange says "return", a refund may say "broken"). Gold labels come from the generator.
It exists to measure weak supervision and active learning (tests and `benchmarks/weak_supervision.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from keel.pipeline._sample_corpus import _FIRST, _LAST, PRODUCTS

__all__ = ["INTENTS", "TicketExample", "ticket_intents"]

# Intent -> share of the queue. Uneven on purpose: a rare class is what random sampling is slow to find.
INTENTS: dict[str, float] = {
    "shipping": 0.30,
    "order_status": 0.24,
    "refund": 0.18,
    "warranty": 0.14,
    "exchange": 0.08,
    "privacy": 0.06,
}

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shipping": (
        "Does the {p} ship to {country}, and how long does delivery take?",
        "How much is shipping for the {p} to {country}?",
        "Is delivery free if I order the {p} and a second item?",
        "Can the {p} be delivered to a PO box?",
        "What carrier do you use to ship the {p} to {country}?",
        "Before I buy the {p}: how many days does it take to arrive in {country}?",
        "Do you deliver to {country}? I want to order the {p}.",
        "Will the {p} need a signature on delivery?",
        "How fast can you get the {p} to me in {country}, is there express shipping?",
        "I am thinking of ordering the {p}. Do you ship internationally?",
    ),
    "order_status": (
        "The {p} I ordered has not shipped yet after a week. Please check order {order}.",
        "Where is my order {order}? The {p} was supposed to arrive {days} days ago.",
        "My tracking number for the {p} has not updated in {days} days.",
        "Order {order} says shipped but the {p} never arrived.",
        "Can you tell me when order {order} with the {p} will be dispatched?",
        "I am still waiting for the {p}, order {order}. Any news?",
        "The delivery of my {p} is late, it was due last week. Order {order}.",
        "Has order {order} left the warehouse yet? It is the {p}.",
    ),
    "refund": (
        "I would like to return the {p}; it is unused. How long do refunds take?",
        "Please refund order {order}, I no longer need the {p}.",
        "I sent the {p} back {days} days ago and still have no refund.",
        "Can I get my money back for the {p}? It is still in its box.",
        "The {p} arrived broken and I do not want a replacement, I want a refund.",
        "I returned the {p}. When will the money reach my card?",
        "Cancel order {order} and refund me please, the {p} is not what I expected.",
    ),
    "warranty": (
        "My {p} arrived with a torn seam. Can I claim the warranty? Order {order}.",
        "The {p} stopped working after {days} months. Is it still under warranty?",
        "The zip on my {p} broke on the second trip. Can you repair or replace it?",
        "There is a defect in my {p}: a crack appeared after {days} weeks of normal use.",
        "How do I file a warranty claim for the {p}? I have a photo of the damage.",
        "My {p} is faulty, the stitching came apart. Will you fix it?",
        "Is a broken buckle on the {p} covered by the warranty?",
    ),
    "exchange": (
        "Can I exchange the {p} for a different colour?",
        "I would like to swap my {p} for the bigger size, can I return it for that?",
        "The {p} is too small. Can you send me a larger one instead?",
        "I used the {p} once outdoors; can I still exchange it for another model?",
        "Could I trade the {p} I bought for the {p2}? I will pay the difference.",
        "Is it possible to exchange order {order}, the {p}, for a different colour or size?",
    ),
    "privacy": (
        "Please delete my account and all data you hold about me.",
        "Send me a copy of the personal data you keep from my orders.",
        "How long do you keep my support conversations and order records?",
        "I want my data erased. I bought the {p} last year.",
        "Do you sell customer data to third parties? I am worried after buying the {p}.",
        "Remove my email address and phone number from your records please.",
    ),
}
# Asides that real tickets carry: words of another intent in a sentence that does not change the ask.
_ASIDES = (
    "Your delivery was quick last time.",
    "I have ordered from you for years and never needed a refund.",
    "The colour is lovely, by the way.",
    "My last order shipped fast.",
    "I read your privacy page.",
    "I kept the box in case I need to return something.",
    "The warranty was one reason I chose you.",
    "I live in Canada for half of the year.",
    "",
)
_COUNTRIES = ("Canada", "Germany", "France", "Spain", "Mexico", "Japan", "Ireland", "the United States")


@dataclass(frozen=True, slots=True)
class TicketExample:
    """One ticket and its intent."""

    id: str
    text: str
    intent: str


def _contact(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com"
    return rng.choice(
        (
            f"You can reach me at {email}. Thanks, {first}",
            f"Thanks, {first} {last}",
            f"Call me on +1 415 555 {rng.randint(100, 199):04d}. {first}",
            f"Regards, {first}",
            "",
        )
    )


def ticket_intents(n: int, *, seed: int = 0) -> list[TicketExample]:
    """`n` tickets with their intents, the same for the same seed.

    Examples:
        >>> [t.intent for t in ticket_intents(3, seed=1)]  # doctest: +SKIP
        ['shipping', 'refund', 'order_status']
    """
    rng = random.Random(seed)
    intents, weights = list(INTENTS), list(INTENTS.values())
    out: list[TicketExample] = []
    for i in range(n):
        intent = rng.choices(intents, weights)[0]
        p, p2 = rng.sample(PRODUCTS, 2)
        text = rng.choice(_TEMPLATES[intent]).format(
            p=p.name, p2=p2.name, order=70000 + rng.randint(0, 9999), days=rng.randint(2, 14),
            country=rng.choice(_COUNTRIES),
        )  # fmt: skip
        aside = rng.choice(_ASIDES) if rng.random() < 0.35 else ""
        parts = [aside, text] if rng.random() < 0.5 else [text, aside]
        body = " ".join(p for p in [*parts, _contact(rng)] if p)
        out.append(TicketExample(id=f"t{seed}-{i:05d}", text=body, intent=intent))
    return out
