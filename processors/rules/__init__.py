"""Rule segments: a small safe expression language and static/dynamic segment definitions.

* :mod:`processors.rules.language` - tokenizer, recursive-descent parser, AST, evaluation.
* :mod:`processors.rules.segments` - YAML definitions and :class:`RuleSegmentProcessor`.
* :mod:`processors.rules.attributes` - the attribute vocabulary and mappers from processor outputs.
"""

from processors.rules.attributes import (
    KNOWN_ATTRIBUTES,
    behaviour_attributes,
    feature_attributes,
    registry_attributes,
    rfm_attributes,
)
from processors.rules.language import Rule, RuleSyntaxError, compile_rule, tokenize
from processors.rules.segments import (
    CustomerAttributes,
    RuleSegmentProcessor,
    SegmentDefinition,
    load_segment_definitions,
    load_segment_definitions_text,
    parse_segment_definitions,
)

__all__ = [
    "KNOWN_ATTRIBUTES",
    "CustomerAttributes",
    "Rule",
    "RuleSegmentProcessor",
    "RuleSyntaxError",
    "SegmentDefinition",
    "behaviour_attributes",
    "compile_rule",
    "feature_attributes",
    "load_segment_definitions",
    "load_segment_definitions_text",
    "parse_segment_definitions",
    "registry_attributes",
    "rfm_attributes",
    "tokenize",
]
