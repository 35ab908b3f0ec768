"""Tokens to a syntax tree: a recursive-descent parser of TBEL as users write it (MVEL's syntax
with JavaScript-like maps and lists). Constructs TBEL has but we do not run fail here, with where."""

from __future__ import annotations

from thingsray.rules.script._tbel import nodes as n
from thingsray.rules.script._tbel.lexer import EOF, ID, NUM, OP, STR, Token, syntax_error, tokenize
from thingsray.rules.script._tbel.values import EMPTY
from thingsray.rules.script.errors import ScriptError

PRIMITIVE_TYPES = {"int", "long", "short", "byte", "char", "double", "float", "boolean"}
BOXED_TYPES = {"Integer", "Long", "Short", "Byte", "Character", "Double", "Float", "Boolean", "String", "Object",
               "Number"}
DECL_TYPES = PRIMITIVE_TYPES | BOXED_TYPES | {"List", "Map", "ArrayList", "HashMap"}
ASSIGN_OPS = {"=": None, "+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%", "&=": "&", "|=": "|", "^=": "^",
              "<<=": "<<", ">>=": ">>", ">>>=": ">>>"}
BINARY_PRECEDENCE = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5,
    "==": 6, "!=": 6, "===": 6, "!==": 6,
    "<": 7, ">": 7, "<=": 7, ">=": 7, "~=": 7, "contains": 7,
    "<<": 8, ">>": 8, ">>>": 8,
    "+": 9, "-": 9, "#": 9,
    "*": 10, "/": 10, "%": 10,
    "**": 11,
}
WORD_OPERATORS = {"and": "&&", "contains": "contains"}
UNSUPPORTED_WORD_OPERATORS = {"or", "instanceof", "is", "soundslike", "strsim", "in", "convertable_to"}
UNSUPPORTED_STATEMENTS = {
    "switch": "'switch' is not supported; use if / else if",
    "case": "'case' is not supported; use if / else if",
    "default": "'default' is not supported; use if / else if",
    "with": "'with' blocks are not supported",
    "import": "'import' is not supported",
    "import_static": "'import_static' is not supported",
    "assert": "'assert' is not supported; use raiseError(message)",
    "proto": "'proto' is not supported",
    "stacklang": "'stacklang' is not supported",
    "throw": "'throw' is not supported; use raiseError(message)",
    "try": "'try' is not supported",
    "catch": "'catch' is not supported",
    "let": "'let' is not supported; use 'var'",
    "const": "'const' is not supported; use 'var'",
    "class": "'class' is not supported",
    "isdef": "'isdef' is not supported; compare with null",
}
RESERVED = {"var", "function", "def", "if", "else", "while", "until", "do", "for", "foreach", "return", "break",
            "continue", "new", "true", "false", "null", "nil", "empty"} | set(UNSUPPORTED_STATEMENTS)
STATEMENT_WORDS = {"var", "function", "def", "if", "while", "until", "do", "for", "foreach", "return", "break",
                   "continue", "else"}
LITERALS = {"true": True, "false": False, "null": None, "nil": None}


class Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self.toks = tokenize(source)
        self.i = 0

    # ---- token helpers

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def at(self, value: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == OP and tok.value == value

    def at_word(self, value: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == ID and tok.value == value

    def accept(self, value: str) -> bool:
        if self.at(value):
            self.i += 1
            return True
        return False

    def error(self, tok: Token, message: str) -> ScriptError:
        return syntax_error(self.src, tok.pos, message)

    def expect(self, value: str, context: str = "") -> Token:
        tok = self.peek()
        if tok.kind == OP and tok.value == value:
            return self.advance()
        where = f" {context}" if context else ""
        raise self.error(tok, f"expected '{value}'{where}, found {describe(tok)}")

    def identifier(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind != ID:
            raise self.error(tok, f"expected {what}, found {describe(tok)}")
        if tok.value in RESERVED:
            raise self.error(tok, f"'{tok.value}' is a reserved word and cannot be used as {what}")
        return self.advance()

    # ---- statements

    def program(self) -> list[n.Node]:
        body: list[n.Node] = []
        while self.peek().kind != EOF:
            if self.accept(";"):
                continue
            body.append(self.statement())
        return body

    def statement(self) -> n.Node:
        tok = self.peek()
        if tok.kind == OP:
            if tok.value == "{" and not self.looks_like_map_literal():
                return self.block()
            if tok.value == ";":
                self.advance()
                return n.Block(tok.pos, [])
        elif tok.kind == ID:
            word = tok.value
            if word in UNSUPPORTED_STATEMENTS:
                raise self.error(tok, UNSUPPORTED_STATEMENTS[word])
            if word in STATEMENT_WORDS:
                return getattr(self, f"stmt_{word}")()  # type: ignore[no-any-return]
            if word in DECL_TYPES and self.is_typed_declaration():
                return self.typed_declaration()
        expr = self.expression()
        self.end_statement()
        return n.ExprStmt(tok.pos, expr)

    def end_statement(self) -> None:
        if self.accept(";"):
            return
        tok = self.peek()
        if tok.kind == EOF or (tok.kind == OP and tok.value == "}"):
            return
        raise self.error(tok, f"expected ';' after the statement, found {describe(tok)}")

    def block(self) -> n.Block:
        start = self.expect("{")
        body: list[n.Node] = []
        while not self.at("}"):
            if self.peek().kind == EOF:
                raise self.error(start, "'{' is never closed")
            if self.accept(";"):
                continue
            body.append(self.statement())
        self.advance()
        return n.Block(start.pos, body)

    def body(self) -> n.Node:
        """The body of if/while/for: a block or one statement."""
        if self.at("{"):
            return self.block()
        tok = self.peek()
        if tok.kind == ID and tok.value in ("var", "function", "def"):
            raise self.error(tok, f"'{tok.value}' needs to be inside {{ }} here")
        return self.statement()

    def is_typed_declaration(self) -> bool:
        k = 1
        while self.at("[", k) and self.at("]", k + 1):
            k += 2
        tok = self.peek(k)
        return tok.kind == ID and tok.value not in RESERVED and (self.at("=", k + 1) or self.at(";", k + 1)
                                                                  or self.at(",", k + 1) or self.at(":", k + 1)
                                                                  or self.peek(k + 1).kind == EOF)

    def declared_type(self) -> str:
        typ = str(self.advance().value)
        while self.at("[") and self.at("]", 1):
            self.i += 2
            typ += "[]"
        return typ

    def typed_declaration(self, *, terminate: bool = True) -> n.VarDecl:
        tok = self.peek()
        typ = self.declared_type()
        decl = self.declarations(tok.pos, typ)
        if terminate:
            self.end_statement()
        return decl

    def declarations(self, pos: int, typ: str | None) -> n.VarDecl:
        decls: list[tuple[str, n.Node | None, int]] = []
        while True:
            name = self.identifier("a variable name")
            value = self.assignment() if self.accept("=") else None
            decls.append((str(name.value), value, name.pos))
            if not self.accept(","):
                return n.VarDecl(pos, decls, typ)

    def stmt_var(self, *, terminate: bool = True) -> n.VarDecl:
        tok = self.advance()
        decl = self.declarations(tok.pos, None)
        if terminate:
            self.end_statement()
        return decl

    def stmt_function(self) -> n.FunctionDef:
        tok = self.advance()
        name = self.identifier("a function name")
        self.expect("(", "after the function name")
        params: list[str] = []
        if not self.at(")"):
            while True:
                if self.peek().kind == ID and self.peek().value in DECL_TYPES and self.peek(1).kind == ID:
                    self.declared_type()
                param = self.identifier("a parameter name")
                if param.value in params:
                    raise self.error(param, f"duplicate parameter '{param.value}'")
                params.append(str(param.value))
                if not self.accept(","):
                    break
        self.expect(")", "after the parameters")
        if not self.at("{"):
            raise self.error(self.peek(), f"expected '{{' to start the body of function '{name.value}'")
        return n.FunctionDef(tok.pos, str(name.value), params, self.block())

    stmt_def = stmt_function

    def stmt_if(self) -> n.If:
        tok = self.advance()
        self.expect("(", "after 'if'")
        cond = self.expression()
        self.expect(")", "after the condition")
        then = self.body()
        other = None
        if self.at_word("else"):
            self.advance()
            other = self.body()
        return n.If(tok.pos, cond, then, other)

    def condition(self, word: str) -> n.Node:
        self.expect("(", f"after '{word}'")
        cond = self.expression()
        self.expect(")", "after the condition")
        return cond

    def stmt_while(self) -> n.While:
        tok = self.advance()
        cond = self.condition("while")
        return n.While(tok.pos, cond, self.body())

    def stmt_until(self) -> n.While:
        tok = self.advance()
        cond = self.condition("until")
        return n.While(tok.pos, cond, self.body(), until=True)

    def stmt_do(self) -> n.DoWhile:
        tok = self.advance()
        body = self.body()
        word = self.peek()
        if not (self.at_word("while") or self.at_word("until")):
            raise self.error(word, f"expected 'while' or 'until' after the body of 'do', found {describe(word)}")
        self.advance()
        cond = self.condition(str(word.value))
        self.end_statement()
        return n.DoWhile(tok.pos, body, cond, until=word.value == "until")

    def foreach_head(self) -> tuple[str, n.Node] | None:
        """``[var|Type] name : iterable`` if the tokens ahead are that; else None, nothing consumed."""
        k = 0
        tok = self.peek()
        if tok.kind == ID and (tok.value == "var" or tok.value in DECL_TYPES) and self.peek(1).kind == ID:
            k = 1
            while self.at("[", k) and self.at("]", k + 1):
                k += 2
        name = self.peek(k)
        if name.kind == ID and (self.at_word("in", k + 1) or self.at_word("of", k + 1)):
            raise self.error(self.peek(k + 1), f"use 'for ({name.value} : collection)' to loop over a collection")
        if name.kind != ID or not self.at(":", k + 1):
            return None
        self.i += k
        var = self.identifier("a loop variable name")
        self.expect(":")
        return str(var.value), self.expression()

    def stmt_foreach(self) -> n.ForEach:
        tok = self.advance()
        self.expect("(", f"after '{tok.value}'")
        head = self.foreach_head()
        if head is None:
            raise self.error(self.peek(), "expected 'item : collection' in foreach")
        self.expect(")", "after the foreach head")
        return n.ForEach(tok.pos, head[0], head[1], self.body())

    def stmt_for(self) -> n.Node:
        tok = self.advance()
        self.expect("(", "after 'for'")
        head = self.foreach_head()
        if head is not None:
            self.expect(")", "after the for head")
            return n.ForEach(tok.pos, head[0], head[1], self.body())
        init: list[n.Node] = []
        if not self.at(";"):
            first = self.peek()
            if first.kind == ID and first.value == "var":
                init.append(self.stmt_var(terminate=False))
            elif first.kind == ID and first.value in DECL_TYPES and self.is_typed_declaration():
                init.append(self.typed_declaration(terminate=False))
            else:
                init.extend(n.ExprStmt(e.pos, e) for e in self.expression_list())
        self.expect(";", "after the loop initialiser")
        cond = None if self.at(";") else self.expression()
        self.expect(";", "after the loop condition")
        update = [] if self.at(")") else self.expression_list()
        self.expect(")", "after the for head")
        return n.For(tok.pos, init, cond, update, self.body())

    def expression_list(self) -> list[n.Node]:
        items = [self.expression()]
        while self.accept(","):
            items.append(self.expression())
        return items

    def stmt_return(self) -> n.Return:
        tok = self.advance()
        nxt = self.peek()
        if nxt.kind == EOF or (nxt.kind == OP and nxt.value in (";", "}")):
            value = None
        else:
            value = self.expression()
        self.end_statement()
        return n.Return(tok.pos, value)

    def stmt_break(self) -> n.Break:
        tok = self.advance()
        self.end_statement()
        return n.Break(tok.pos)

    def stmt_continue(self) -> n.Continue:
        tok = self.advance()
        self.end_statement()
        return n.Continue(tok.pos)

    def stmt_else(self) -> n.Node:
        raise self.error(self.peek(), "'else' without a matching 'if'")

    # ---- expressions

    def expression(self) -> n.Node:
        return self.assignment()

    def assignment(self) -> n.Node:
        left = self.ternary()
        tok = self.peek()
        if tok.kind == OP and tok.value in ASSIGN_OPS:
            if not isinstance(left, n.Name | n.Member | n.Index):
                raise self.error(tok, f"cannot assign to this expression with '{tok.value}'")
            if isinstance(left, n.Member) and left.safe:
                raise self.error(tok, "cannot assign through a null-safe '?.'")
            self.advance()
            value = self.assignment()
            return n.Assign(left.pos, left, ASSIGN_OPS[str(tok.value)], value)
        return left

    def ternary(self) -> n.Node:
        cond = self.binary(1)
        if self.at("?"):
            self.advance()
            then = self.assignment()
            self.expect(":", "in the ternary expression")
            other = self.assignment()
            return n.Ternary(cond.pos, cond, then, other)
        return cond

    def binary_operator(self) -> str | None:
        tok = self.peek()
        if tok.kind == OP and tok.value in BINARY_PRECEDENCE:
            return str(tok.value)
        if tok.kind == ID:
            if tok.value in WORD_OPERATORS:
                return WORD_OPERATORS[str(tok.value)]
            if tok.value in UNSUPPORTED_WORD_OPERATORS:
                raise self.error(tok, f"the '{tok.value}' operator is not supported")
        return None

    def binary(self, min_prec: int) -> n.Node:
        left = self.unary()
        while True:
            op = self.binary_operator()
            if op is None:
                return left
            prec = BINARY_PRECEDENCE[op]
            if prec < min_prec:
                return left
            tok = self.advance()
            right = self.binary(prec if op == "**" else prec + 1)
            if op in ("&&", "||"):
                left = n.Logical(tok.pos, op, left, right)
            else:
                left = n.Binary(tok.pos, op, left, right)

    def unary(self) -> n.Node:
        tok = self.peek()
        if tok.kind == OP:
            if tok.value in ("!", "-", "+", "~"):
                self.advance()
                operand = self.unary()
                if tok.value == "-" and isinstance(operand, n.Const) and type(operand.value) in (int, float):
                    return n.Const(tok.pos, -operand.value)  # type: ignore[operator]
                return n.Unary(tok.pos, str(tok.value), operand)
            if tok.value in ("++", "--"):
                self.advance()
                target = self.unary()
                self.check_assignable(target, tok)
                return n.IncDec(tok.pos, target, 1 if tok.value == "++" else -1, prefix=True)
            if tok.value == "(" and self.is_cast():
                self.advance()
                typ = self.declared_type()
                self.expect(")")
                return n.Cast(tok.pos, typ, self.unary())
        return self.postfix()

    def is_cast(self) -> bool:
        typ = self.peek(1)
        if typ.kind != ID or typ.value not in PRIMITIVE_TYPES | BOXED_TYPES:
            return False
        k = 2
        while self.at("[", k) and self.at("]", k + 1):
            k += 2
        if not self.at(")", k):
            return False
        nxt = self.peek(k + 1)
        signs = ("-", "+") if typ.value in PRIMITIVE_TYPES else ()
        return nxt.kind in (ID, NUM, STR) or (nxt.kind == OP and nxt.value in ("(", "!", "~", "[", "{", *signs))

    def check_assignable(self, target: n.Node, tok: Token) -> None:
        if not isinstance(target, n.Name | n.Member | n.Index) or (isinstance(target, n.Member) and target.safe):
            raise self.error(tok, f"'{tok.value}' needs a variable, a property or an element")

    def postfix(self) -> n.Node:
        expr = self.primary()
        while True:
            tok = self.peek()
            if tok.kind != OP:
                return expr
            if tok.value in (".", "?.", ".?"):
                self.advance()
                name = self.peek()
                if name.kind != ID:
                    raise self.error(name, f"expected a property or method name after '{tok.value}'")
                self.advance()
                safe = tok.value != "."
                if self.at("("):
                    expr = n.MethodCall(name.pos, expr, str(name.value), self.arguments(), safe)
                else:
                    expr = n.Member(name.pos, expr, str(name.value), safe)
            elif tok.value == "[":
                self.advance()
                index = self.expression()
                self.expect("]", "after the index")
                expr = n.Index(tok.pos, expr, index)
            elif tok.value in ("++", "--"):
                if not isinstance(expr, n.Name | n.Member | n.Index):
                    return expr
                self.advance()
                expr = n.IncDec(tok.pos, expr, 1 if tok.value == "++" else -1, prefix=False)
            elif tok.value == "(":
                raise self.error(tok, "only named functions can be called")
            else:
                return expr

    def arguments(self) -> list[n.Node]:
        self.expect("(")
        args: list[n.Node] = []
        if self.accept(")"):
            return args
        while True:
            args.append(self.assignment())
            if self.accept(")"):
                return args
            if not self.accept(","):
                raise self.error(self.peek(), f"expected ',' or ')' in the arguments, found {describe(self.peek())}")

    def primary(self) -> n.Node:
        tok = self.peek()
        if tok.kind == NUM or tok.kind == STR:
            self.advance()
            return n.Const(tok.pos, tok.value)
        if tok.kind == ID:
            word = str(tok.value)
            if word in LITERALS:
                self.advance()
                return n.Const(tok.pos, LITERALS[word])
            if word == "empty":
                self.advance()
                return n.Const(tok.pos, EMPTY)
            if word == "new":
                return self.new_expression()
            if word in ("function", "def"):
                raise self.error(tok, "function expressions are not supported; define a named function")
            if word in RESERVED:
                raise self.error(tok, f"unexpected '{word}'")
            self.advance()
            if self.at("("):
                return n.Call(tok.pos, word, self.arguments())
            return n.Name(tok.pos, word)
        if tok.kind == OP:
            if tok.value == "(":
                self.advance()
                expr = self.expression()
                self.expect(")", "to close '('")
                return expr
            if tok.value == "[":
                return self.bracket_literal()
            if tok.value == "{":
                return self.brace_literal()
        if tok.kind == EOF:
            raise self.error(tok, "unexpected end of script; expected an expression")
        raise self.error(tok, f"unexpected {describe(tok)}; expected an expression")

    def new_expression(self) -> n.Node:
        tok = self.advance()
        parts = [str(self.identifier("a type name after 'new'").value)]
        while self.accept("."):
            parts.append(str(self.identifier("a type name").value))
        cls = ".".join(parts)
        if self.at("["):
            self.advance()
            if self.accept("]"):
                while self.at("[") and self.at("]", 1):
                    self.i += 2
                    cls += "[]"
                if not self.at("{"):
                    raise self.error(self.peek(), "expected '{ ... }' or a size for the new array")
                return n.NewArray(tok.pos, cls, None, self.array_items())
            size = self.expression()
            self.expect("]", "after the array size")
            return n.NewArray(tok.pos, cls, size, None)
        if not self.at("("):
            raise self.error(self.peek(), f"expected '(' or '[' after 'new {cls}'")
        return n.NewObject(tok.pos, cls, self.arguments())

    def array_items(self) -> list[n.Node]:
        self.expect("{")
        items: list[n.Node] = []
        while not self.accept("}"):
            items.append(self.assignment())
            if not self.at("}"):
                self.expect(",", "between array items")
        return items

    def looks_like_map_literal(self) -> bool:
        if self.at("}", 1):
            return True
        key = self.peek(1)
        return key.kind in (ID, STR, NUM) and self.at(":", 2)

    def map_key(self) -> object:
        tok = self.advance()
        if tok.kind in (ID, STR, NUM):
            return tok.value
        raise self.error(tok, f"expected a map key (a name, string or number), found {describe(tok)}")

    def brace_literal(self) -> n.Node:
        start = self.advance()
        if self.accept("}"):
            return n.MapLit(start.pos, [])
        if self.peek().kind in (ID, STR, NUM) and self.at(":", 1):
            return self.map_entries(start, "}")
        items: list[n.Node] = []
        while True:
            items.append(self.assignment())
            if self.accept("}"):
                return n.ListLit(start.pos, items)
            self.expect(",", "between array items")

    def map_entries(self, start: Token, close: str) -> n.MapLit:
        pairs: list[tuple[object, n.Node]] = []
        while True:
            key = self.map_key()
            self.expect(":", "after the map key")
            pairs.append((key, self.assignment()))
            if self.accept(close):
                return n.MapLit(start.pos, pairs)
            self.expect(",", "between map entries")
            if self.accept(close):
                return n.MapLit(start.pos, pairs)

    def bracket_literal(self) -> n.Node:
        start = self.advance()
        if self.accept("]"):
            return n.ListLit(start.pos, [])
        if self.at(":") and self.at("]", 1):
            self.i += 2
            return n.MapLit(start.pos, [])
        if self.peek().kind in (STR, NUM) and self.at(":", 1):
            return self.map_entries(start, "]")
        items: list[n.Node] = []
        while True:
            items.append(self.assignment())
            if self.accept("]"):
                return n.ListLit(start.pos, items)
            self.expect(",", "between list items")
            if self.accept("]"):
                return n.ListLit(start.pos, items)


def describe(tok: Token) -> str:
    if tok.kind == EOF:
        return "the end of the script"
    if tok.kind == STR:
        return "a string"
    if tok.kind == NUM:
        return f"number {tok.text}"
    return f"'{tok.text}'"


def parse(source: str) -> list[n.Node]:
    try:
        return Parser(source).program()
    except RecursionError:
        raise ScriptError("the script is nested too deeply") from None
