"""Evaluator for parsed templates: a port of Go's ``text/template`` execution (``exec.go``).

The evaluator walks the tree from :mod:`monitoring.templates.parser` with the data
Prometheus gives alert templates (``.Labels``, ``.ExternalLabels``,
``.ExternalURL``, ``.Value`` and the matching ``$`` variables) and reproduces Go's
semantics where they differ from Python's: variable scoping, truthiness,
argument type checking, missing map keys (``missingkey=zero``: a missing label
reads as ""), ``and``/``or`` short-circuiting, and the wording of runtime
errors. Execution is bounded (steps and output size) so a hostile template
cannot hang the alert engine; real templates are far below the limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NoReturn

from monitoring.templates.functions import (
    FUNCTIONS,
    AlertData,
    AnyMap,
    FuncError,
    FuncSpec,
    Param,
    Sample,
    TemplateContext,
    TemplateRenderError,
    go_quote,
    go_type_name,
    is_true,
    method_spec,
    sample_fields,
    template_print,
)
from monitoring.templates.parser import (
    PREDECLARED_VARIABLES,
    ActionNode,
    ArgNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    Template,
    TextNode,
    VariableNode,
    WithNode,
)

MAX_STEPS = 1_000_000
"""Most nodes one rendering may evaluate (a ``range`` over a huge number stops here)."""

MAX_OUTPUT = 1 << 20
"""Most characters one rendering may produce."""

MAX_WORK = 16 * MAX_OUTPUT
"""Most characters the functions of one rendering may produce, printed or not.

Without it ``{{range 1000000}}{{$x := printf "%1000000d" 0}}{{end}}`` would
allocate a terabyte without writing a byte of output."""


class _Missing:
    """Go's ``missingVal``: "no value was piped in", distinct from nil."""


_MISSING = _Missing()


class _Break(Exception):
    """``{{break}}``, unwinding to the enclosing range."""


class _Continue(Exception):
    """``{{continue}}``, unwinding to the next range iteration."""


class _Executor:
    """Execution state: the variable stack, the output and the budget."""

    def __init__(self, source: str, context: TemplateContext) -> None:
        self.source = source
        self.ctx = context
        self.names: list[str] = []
        self.values: list[object] = []
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.work = 0

    # -- bookkeeping ------------------------------------------------------

    def fail(self, message: str, node: Node) -> NoReturn:
        context = str(node)
        if len(context) > 80:
            context = context[:77] + "..."
        raise TemplateRenderError(message, node.pos, node.end, context)

    def tick(self, node: Node) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.fail(f"template execution exceeded {MAX_STEPS} steps", node)

    def write(self, text: str, node: Node) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            self.fail(f"template output exceeded {MAX_OUTPUT} characters", node)
        self.out.append(text)

    def push(self, name: str, value: object) -> None:
        self.names.append(name)
        self.values.append(value)

    def pop(self, mark: int) -> None:
        del self.names[mark:]
        del self.values[mark:]

    def find_var(self, name: str, node: Node) -> int:
        for i in range(len(self.names) - 1, -1, -1):
            if self.names[i] == name:
                return i
        self.fail(f"undefined variable: {name}", node)

    def var_value(self, node: VariableNode) -> object:
        return self.values[self.find_var(node.idents[0], node)]

    def set_var(self, node: VariableNode, value: object) -> None:
        self.values[self.find_var(node.idents[0], node)] = value

    # -- statements -------------------------------------------------------

    def walk(self, dot: object, node: Node) -> None:
        self.tick(node)
        if isinstance(node, TextNode):
            self.write(node.text, node)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decls:
                self.write(template_print(value), node)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, BranchNode):
            self.walk_if_or_with(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        else:
            self.fail(f"unknown node: {node}", node)

    def walk_if_or_with(self, dot: object, node: BranchNode) -> None:
        """``if`` and ``with`` are alike, except that ``with`` moves the cursor."""
        mark = len(self.names)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if isinstance(node, WithNode) else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            self.pop(mark)

    def range_items(self, node: RangeNode, value: object) -> Iterable[tuple[object, object]]:
        """``(index or key, element)`` pairs: slices in order, maps by sorted key, ints."""
        if value is None:
            return ()
        if isinstance(value, list):
            return enumerate(value)
        if isinstance(value, dict):
            return [(key, value[key]) for key in sorted(value)]
        if isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decls) > 1:
                self.fail(f"can't use {value} to iterate over more than one variable", node)
            return ((None, i) for i in range(value))
        self.fail(f"range can't iterate over {template_print(value)}", node)

    def walk_range(self, dot: object, node: RangeNode) -> None:
        mark = len(self.names)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            body_mark = len(self.names)
            ran = False
            try:
                for index, element in self.range_items(node, value):
                    ran = True
                    self.one_iteration(node, body_mark, index, element)
            except _Break:
                return
            if not ran and node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            self.pop(mark)

    def one_iteration(self, node: RangeNode, mark: int, index: object, element: object) -> None:
        """Bind ``$i, $e`` (declared or assigned) and run the body once."""
        decls, assign = node.pipe.decls, node.pipe.is_assign
        if decls:
            if assign:
                self.set_var(decls[0], index if len(decls) > 1 else element)
            else:
                self.values[mark - 1] = element
        if len(decls) > 1:
            if assign:
                self.set_var(decls[1], element)
            else:
                self.values[mark - 2] = index
        try:
            self.walk(element, node.body)
        except _Continue:
            pass
        finally:
            self.pop(mark)

    # -- expressions ------------------------------------------------------

    def eval_pipeline(self, dot: object, pipe: PipeNode) -> object:
        """Run the commands, each receiving the previous result as its last argument."""
        value: object = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for decl in pipe.decls:
            if pipe.is_assign:
                self.set_var(decl, value)
            else:
                self.push(decl.idents[0], value)
        return value

    def not_a_function(self, args: Sequence[ArgNode], final: object, node: Node) -> None:
        if len(args) > 1 or final is not _MISSING:
            self.fail(f"can't give argument to non-function {args[0]}", node)

    def eval_command(self, dot: object, cmd: CommandNode, final: object) -> object:
        self.tick(cmd)
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.not_a_function(cmd.args, final, first)
        if isinstance(first, PipeNode):
            return self.eval_pipeline(dot, first)
        if isinstance(first, NilNode):
            self.fail("nil is not a command", first)
        return self.eval_literal(dot, first)

    def eval_literal(self, dot: object, node: ArgNode) -> object:
        """A constant (or ``.``) where any type is acceptable: Go's ``evalEmptyInterface``."""
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, StringNode):
            return node.text
        self.fail(f"can't evaluate command {go_quote(str(node))}", node)

    def ideal_constant(self, node: NumberNode) -> object:
        """An untyped constant takes the type its syntax suggests: ``1`` int, ``1.0`` float."""
        if node.is_float_syntax:
            return node.float_value
        if node.int_value is not None:
            return node.int_value
        if node.uint_only:
            self.fail(f"{node.text} overflows int", node)
        return None

    def eval_chain(self, dot: object, chain: ChainNode, args: Sequence[ArgNode] | None,
                   final: object) -> object:
        if isinstance(chain.node, NilNode):
            self.fail(f"indirection through explicit nil in {chain}", chain)
        receiver = self.eval_arg(dot, Param.ANY, chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final)

    def eval_variable(self, dot: object, node: VariableNode, args: Sequence[ArgNode] | None,
                      final: object) -> object:
        value = self.var_value(node)
        if len(node.idents) == 1:
            self.not_a_function(args or (node,), final, node)
            return value
        return self.eval_field_chain(dot, value, node, node.idents[1:], args, final)

    def eval_field_chain(self, dot: object, receiver: object, node: Node,
                         idents: Sequence[str], args: Sequence[ArgNode] | None,
                         final: object) -> object:
        """``.X.Y.Z``: walk the chain; only the last element receives arguments."""
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, None, _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(self, dot: object, name: str, node: Node, args: Sequence[ArgNode] | None,
                   final: object, receiver: object) -> object:
        """A method call, struct field or map entry (missing entries read as the zero value)."""
        if receiver is None:
            return None
        method = method_spec(receiver, name)
        if method is not None:
            return self.eval_call(dot, method, node, args, final)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        fields: dict[str, object] | None = None
        if isinstance(receiver, AlertData):
            fields = receiver.fields()
        elif isinstance(receiver, Sample):
            fields = sample_fields(receiver)
        elif isinstance(receiver, dict):
            if has_args:
                self.fail(f"{name} is not a method but has arguments", node)
            return receiver.get(name, None if isinstance(receiver, AnyMap) else "")
        if fields is not None and name in fields:
            if has_args:
                self.fail(f"{name} has arguments but cannot be invoked as function", node)
            return fields[name]
        self.fail(f"can't evaluate field {name} in type {go_type_name(receiver)}", node)

    def eval_function(self, dot: object, ident: IdentifierNode, node: Node,
                      args: Sequence[ArgNode] | None, final: object) -> object:
        spec = FUNCTIONS.get(ident.name)
        if spec is None:
            self.fail(f"{go_quote(ident.name)} is not a defined function", ident)
        return self.eval_call(dot, spec, node, args, final, builtin=True)

    def eval_call(self, dot: object, spec: FuncSpec, node: Node, args: Sequence[ArgNode] | None,
                  final: object, builtin: bool = False) -> object:
        """Check arity, evaluate and convert arguments, call; wrap errors like Go."""
        call_args = list(args[1:]) if args is not None else []
        given = len(call_args) + (final is not _MISSING)
        fixed = len(spec.params)
        if spec.variadic is not None and given < fixed:
            self.fail(f"wrong number of args for {spec.name}: want at least {fixed} "
                      f"got {len(call_args)}", node)
        if spec.variadic is None and given != fixed:
            self.fail(f"wrong number of args for {spec.name}: want {fixed} got {given}", node)
        if builtin and spec.name in ("and", "or"):
            return self.eval_and_or(dot, spec.name, call_args, final, node)
        argv = [self.eval_arg(dot, spec.param_for(i), arg) for i, arg in enumerate(call_args)]
        if final is not _MISSING:
            argv.append(self.validate_type(final, spec.param_for(len(call_args)), node))
        if builtin and spec.name == "call":
            self.call_builtin(argv, call_args, node)
        try:
            result = spec.impl(argv, self.ctx)
        except FuncError as exc:
            self.fail(f"error calling {spec.name}: {exc}", node)
        except Exception as exc:  # Go's safeCall turns a panicking function into an error
            self.fail(f"error calling {spec.name}: {exc}", node)
        if isinstance(result, str):
            self.work += len(result)
            if self.work > MAX_WORK:
                self.fail(f"template functions produced more than {MAX_WORK} characters", node)
        return result

    def eval_and_or(self, dot: object, name: str, args: list[ArgNode], final: object,
                    node: Node) -> object:
        """``and``/``or`` return the first decisive argument, evaluating no further."""
        value: object = None
        for arg in args:
            value = self.eval_arg(dot, Param.VALUE, arg)
            if is_true(value) == (name == "or"):
                return value
        if final is not _MISSING:
            value = self.validate_type(final, Param.VALUE, node)
        return value

    def call_builtin(self, argv: list[object], args: list[ArgNode], node: Node) -> NoReturn:
        """``call``: templates here have no function values, so every call fails as in Go."""
        callee = argv[0]
        if callee is None:
            self.fail("error calling call: call of nil", node)
        name = str(args[0]) if args else template_print(callee)
        self.fail(f"error calling call: non-function {name} of type {go_type_name(callee)}", node)

    def eval_arg(self, dot: object, kind: Param, node: ArgNode) -> object:
        """Evaluate an argument for a parameter of type ``kind`` (Go's ``evalArg``)."""
        self.tick(node)
        if isinstance(node, DotNode):
            return self.validate_type(dot, kind, node)
        if isinstance(node, NilNode):
            if kind.nillable:
                return None
            self.fail(f"cannot assign nil to {kind.value}", node)
        value: object
        if isinstance(node, FieldNode):
            value = self.eval_field_chain(dot, dot, node, node.idents, (node,), _MISSING)
        elif isinstance(node, VariableNode):
            value = self.eval_variable(dot, node, None, _MISSING)
        elif isinstance(node, PipeNode):
            value = self.eval_pipeline(dot, node)
        elif isinstance(node, IdentifierNode):
            value = self.eval_function(dot, node, node, None, _MISSING)
        elif isinstance(node, ChainNode):
            value = self.eval_chain(dot, node, None, _MISSING)
        else:
            return self.eval_constant(dot, kind, node)
        return self.validate_type(value, kind, node)

    def eval_constant(self, dot: object, kind: Param, node: ArgNode) -> object:
        """A literal argument: checked against the parameter type, not converted."""
        if kind is Param.STRING:
            if isinstance(node, StringNode):
                return node.text
            self.fail(f"expected string; found {node}", node)
        if kind is Param.FLOAT:
            if isinstance(node, NumberNode) and node.float_value is not None:
                return node.float_value
            self.fail(f"expected float; found {node}", node)
        if kind in (Param.ANY, Param.VALUE):
            return self.eval_literal(dot, node)
        self.fail(f"can't handle {node} for arg of type {kind.value}", node)

    def validate_type(self, value: object, kind: Param, node: Node) -> object:
        """Go's ``validateType``: nil becomes the zero value; other types must match exactly."""
        if value is None:
            if kind.nillable:
                return None
            self.fail(f"invalid value; expected {kind.value}", node)
        if not kind.accepts(value):
            self.fail(f"wrong type for value; expected {kind.value}; "
                      f"got {go_type_name(value)}", node)
        return value


def execute(template: Template, context: TemplateContext) -> str:
    """Render ``template`` with the data Prometheus builds for alert templates."""
    data = AlertData(dict(context.labels), dict(context.external_labels),
                     context.external_url, float(context.value))
    executor = _Executor(template.source, context)
    predeclared = (data.labels, data.external_labels, data.external_url, data.value)
    executor.push("$", data)
    for name, value in zip(PREDECLARED_VARIABLES, predeclared, strict=True):
        executor.push(name, value)
    try:
        executor.walk(data, template.root)
    except (_Break, _Continue):  # the parser only accepts them inside a range
        raise TemplateRenderError("{{break}} or {{continue}} outside {{range}}") from None
    except RecursionError:
        raise TemplateRenderError("template nesting too deep to evaluate") from None
    return "".join(executor.out)
