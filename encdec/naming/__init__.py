"""Canonical weight names (``schema``) and their per-framework layout (``layout``)."""

from encdec.naming.schema import ParamSpec, Schema, encoder_decoder_schema, needs_enc_to_dec_proj, schema_for

__all__ = ["ParamSpec", "Schema", "encoder_decoder_schema", "needs_enc_to_dec_proj", "schema_for"]
