"""The TBEL interpreter's parts: lexer, parser, compiler to closures, values, helper functions and
methods. Only ``thingsray.rules.script.tbel`` uses them."""
