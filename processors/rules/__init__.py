"""Rule segments: a small safe expression language and static/dynamic segment definitions.

* :mod:`processors.rules.language` - tokenizer, recursive-descent parser, AST, evaluation.
* :mod:`processors.rules.segments` - YAML definitions and :class:`RuleSegmentProcessor`.
"""

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
    "CustomerAttributes",
    "Rule",
    "RuleSegmentProcessor",
    "RuleSyntaxError",
    "SegmentDefinition",
    "compile_rule",
    "load_segment_definitions",
    "load_segment_definitions_text",
    "parse_segment_definitions",
    "tokenize",
]
