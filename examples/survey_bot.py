"""A five-question survey over SMS: conversation state across messages, answers validated.

Run it with ``WEBHOOK_KIT_HANDLERS=examples.survey_bot gunicorn wsgi:app``. With several
gunicorn hosts, point them all at one Redis (``WEBHOOK_KIT_STORE=redis://...``): any host
can take any message of the survey.
"""

from webhook_kit import InboundMessage, WebhookKit
from webhook_kit.conversation import Conversation, Flow, Question

kit = WebhookKit()


def age(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 130:
        raise ValueError("an age is a whole number from 1 to 129")
    return int(text)


def rating(text: str) -> int:
    if text.strip() not in {"1", "2", "3", "4", "5"}:
        raise ValueError("please answer with a number from 1 to 5")
    return int(text)


def yes_or_no(text: str) -> bool:
    answer = text.strip().lower()
    if answer not in {"yes", "y", "no", "n"}:
        raise ValueError("please answer yes or no")
    return answer.startswith("y")


def finish(conversation: Conversation) -> str:
    conversation.state["completed"] = True
    return f"Thank you, {conversation.state['name']}! Your answers are saved."


survey = Flow(
    "survey",
    [
        Question("name", "What is your name?"),
        Question("age", "How old are you?", parse=age),
        Question("city", "Which city do you live in?"),
        Question("rating", "From 1 to 5, how much do you like our service?", parse=rating),
        Question("contact", "May we contact you about your answers? (yes/no)", parse=yes_or_no),
    ],
    done=finish,
)
survey.register(kit)


@kit.on_message()
def welcome(message: InboundMessage, conversation: Conversation) -> list[str]:
    """Any message outside the survey: start it (again, after AGAIN)."""
    if conversation.state.get("completed") and message.body.strip().upper() != "AGAIN":
        return [f"You already answered, {conversation.state['name']}. Reply AGAIN to redo it."]
    conversation.state.clear()
    return ["Welcome to our five-question survey.", survey.start(conversation)]
