"""The OpenAPI 3 description of ``/api/v1``, written once and read by three: the JSON served to
partners, the French documentation page, and the schemathesis run of the tests (which checks
that the server answers exactly what is written here)."""

from __future__ import annotations

from typing import Any

from app.services.requests.validation import DESCRIPTION_MAX, DESCRIPTION_MIN, FULL_NAME_MAX

PROBLEM = "application/problem+json"

_problem = {
    "type": "object",
    "description": "Une erreur, au format « problem details » (RFC 9457), expliquée en français.",
    "required": ["title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string", "description": "L'erreur en quelques mots."},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "Ce qui s'est passé et comment y remédier."},
        "errors": {
            "type": "object",
            "description": "Pour une 422 : un message par champ refusé (« answers.<clé> » pour une réponse).",
            "additionalProperties": {"type": "string"},
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_UNAUTHORIZED = _error("Clé absente, inconnue, expirée ou révoquée.")
_TOO_MANY = _error("Trop d'appels avec cette clé : réessayez après le délai indiqué par l'en-tête Retry-After.")

_question = {
    "type": "object",
    "required": ["key", "label", "choices"],
    "properties": {
        "key": {"type": "string", "description": "Clé à utiliser dans « answers »."},
        "label": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "string"}},
    },
}

_landing = {
    "type": "object",
    "required": ["slug", "title", "paused", "url", "iframe_url", "subjects"],
    "properties": {
        "slug": {"type": "string"},
        "title": {"type": "string"},
        "partner": {"type": "string"},
        "paused": {"type": "boolean", "description": "Une landing en pause ne reçoit plus de demandes."},
        "url": {"type": "string", "description": "Sa page sur Place des Entreprises."},
        "iframe_url": {"type": "string", "description": "Sa version à intégrer dans une iframe."},
        "subjects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["slug", "title", "theme", "questions"],
                "properties": {
                    "slug": {"type": "string", "description": "À envoyer dans « subject »."},
                    "title": {"type": "string"},
                    "theme": {"type": "string"},
                    "questions": {"type": "array", "items": {"$ref": "#/components/schemas/Question"}},
                },
            },
        },
    },
}

_new_solicitation = {
    "type": "object",
    "required": [
        "subject",
        "full_name",
        "email",
        "phone",
        "siret",
        "postal_code",
        "description",
        "origin_url",
    ],
    "properties": {
        "subject": {"type": "string", "description": "Identifiant (slug) du sujet, voir GET /landings."},
        "full_name": {"type": "string", "description": f"Prénom et nom ({FULL_NAME_MAX} caractères au plus)."},
        "email": {"type": "string", "description": "Adresse email du chef d'entreprise."},
        "phone": {"type": "string", "description": "Téléphone (France métropolitaine ou outre-mer)."},
        "siret": {"type": "string", "description": "SIRET de l'établissement (14 chiffres)."},
        "postal_code": {"type": "string", "description": "Code postal de l'établissement."},
        "insee_code": {
            "type": "string",
            "description": "Code INSEE de la commune ; requis quand le code postal couvre plusieurs communes.",
        },
        "description": {
            "type": "string",
            "description": f"Le besoin, entre {DESCRIPTION_MIN} et {DESCRIPTION_MAX} caractères.",
        },
        "landing": {"type": "string", "description": "Slug d'une landing de votre institution (facultatif)."},
        "answers": {
            "type": "object",
            "description": "Réponses aux questions du sujet (clé → réponse), quand il en a.",
            "additionalProperties": {"type": "string"},
        },
        "origin_url": {
            "type": "string",
            "description": "Adresse (http ou https) de la page où la demande a été saisie.",
        },
        "mtm_campaign": {"type": "string", "description": "Campagne (facultatif)."},
        "mtm_kwd": {"type": "string", "description": "Mot-clé de campagne (facultatif)."},
    },
}

_created = {
    "type": "object",
    "required": ["id", "status_url"],
    "properties": {
        "id": {"type": "integer"},
        "status_url": {"type": "string", "description": "Adresse de GET /solicitations/{id}."},
    },
}

_status = {
    "type": "object",
    "required": ["id", "status", "status_label", "created_at", "subject", "needs"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"type": "string", "enum": ["in_progress", "processed", "canceled"]},
        "status_label": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "subject": {"type": "string"},
        "landing": {"type": "string", "nullable": True},
        "needs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["subject", "status", "status_label", "institutions"],
                "properties": {
                    "subject": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": ["quo", "taking_care", "done", "done_no_help", "done_not_reachable", "not_for_me"],
                    },
                    "status_label": {"type": "string"},
                    "institutions": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def openapi_spec(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "API Place des Entreprises",
            "version": "1.0.0",
            "description": (
                "Déposez les demandes des entreprises reçues sur votre site et suivez-les. Chaque appel porte "
                "l'en-tête « Authorization: Bearer <clé> » ; une clé appartient à une institution, expire "
                "(18 mois par défaut) et peut être révoquée. Les demandes suivent exactement les règles du "
                "formulaire public : mêmes contrôles, mêmes messages, même mise en relation."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"cle": []}],
        "components": {
            "securitySchemes": {"cle": {"type": "http", "scheme": "bearer", "description": "Clé d'API (pde_…)."}},
            "schemas": {
                "Problem": _problem,
                "Question": _question,
                "Landing": _landing,
                "NewSolicitation": _new_solicitation,
                "Created": _created,
                "SolicitationStatus": _status,
            },
        },
        "paths": {
            "/landings": {
                "get": {
                    "operationId": "listLandings",
                    "summary": "Les landings de votre institution et leurs sujets",
                    "responses": {
                        "200": {
                            "description": "Les landings, avec les sujets et leurs questions.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["landings"],
                                        "properties": {
                                            "landings": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Landing"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "401": _UNAUTHORIZED,
                        "429": _TOO_MANY,
                    },
                }
            },
            "/solicitations": {
                "post": {
                    "operationId": "createSolicitation",
                    "summary": "Déposer une demande pour une entreprise",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewSolicitation"}}},
                    },
                    "responses": {
                        "201": {
                            "description": "Demande enregistrée ; l'entreprise reçoit un email de confirmation.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}},
                        },
                        "400": _error("Le corps n'est pas un objet JSON."),
                        "401": _UNAUTHORIZED,
                        "403": _error("La landing appartient à une autre institution."),
                        "404": _error("Landing inconnue."),
                        "409": _error("La landing est en pause."),
                        "415": _error("Le corps doit être envoyé en application/json."),
                        "422": _error("Champs refusés : un message en français par champ, dans « errors »."),
                        "429": _TOO_MANY,
                    },
                }
            },
            "/solicitations/{id}": {
                "get": {
                    "operationId": "getSolicitation",
                    "summary": "Où en est une demande déposée par votre institution",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "responses": {
                        "200": {
                            "description": "Son statut et celui de ses besoins.",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/SolicitationStatus"}}
                            },
                        },
                        "401": _UNAUTHORIZED,
                        "404": _error("Aucune demande de votre institution ne porte ce numéro."),
                        "429": _TOO_MANY,
                    },
                }
            },
        },
    }
