from dataclasses import dataclass

PRESCRIBER = "prescriber"
LAB = "lab"
ROLES = (PRESCRIBER, LAB)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who calls: taken from the access token, never from a request body."""

    client_pk: int
    role: str
    identifier: str
    name: str

    @property
    def is_lab(self) -> bool:
        return self.role == LAB

    @property
    def is_prescriber(self) -> bool:
        return self.role == PRESCRIBER
