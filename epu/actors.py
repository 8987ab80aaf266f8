from dataclasses import dataclass

PRESCRIBER = "prescriber"
LAB = "lab"
NURSE = "nurse"  # infirmier·ère libéral·e (IDEL), identified by RPPS
ROLES = (PRESCRIBER, LAB, NURSE)


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

    @property
    def is_nurse(self) -> bool:
        return self.role == NURSE
