// Interpreter features one at a time. Every expected string below is what Python jinja2
// 3.1.6 renders with Hugging Face's settings (ImmutableSandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False), strftime_now at
// 2024-07-26); they were produced with that reference and pasted here.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenmill/core/status.h"
#include "tokenmill/tokenizer/chat_template.h"

namespace tokenmill {
namespace {

struct Case {
  const char* name;
  const char* source;
  const char* context;  // JSON object of template variables
  const char* expected;
};

// clang-format off
const Case kCases[] = {
    {"TextAndComments",
     "a{# c #}b{#- d -#}  c",
     "{}",
     "abc"},
    {"TrimBlocksEatsNewline",
     "{% if true %}\nx\n{% endif %}\ny",
     "{}",
     "x\ny"},
    {"LstripBlocksIndent",
     "  {% if true %}\n    x\n  {% endif %}\nz",
     "{}",
     "    x\nz"},
    {"PlusDisablesLstrip",
     "  {%+ if true %}x{% endif %}",
     "{}",
     "  x"},
    {"MinusStripsBothSides",
     "a  \n {%- if true -%} \n b \n {%- endif -%}\n c",
     "{}",
     "abc"},
    {"VariableMinus",
     "a {{- 'x' -}} b",
     "{}",
     "axb"},
    {"VariableNotLstripped",
     "  {{ 'x' }}\n",
     "{}",
     "  x"},
    {"RawBlock",
     "{% raw %}{{ x }}{% endraw %}",
     "{}",
     "{{ x }}"},
    {"TrailingNewlineDropped",
     "x\n",
     "{}",
     "x"},
    {"CrLfNormalized",
     "a\r\nb\rc",
     "{}",
     "a\nb\nc"},
    {"Literals",
     "{{ 1 }} {{ 1.5 }} {{ 'a' \"b\" }} {{ true }} {{ none }} {{ [1, 'x'] }} {{ {'k': 1} }} {{ (1,) }} {{ 1e16 }} {{ 0.1 + 0.2 }}",
     "{}",
     "1 1.5 ab True None [1, 'x'] {'k': 1} (1,) 1e+16 0.30000000000000004"},
    {"Arithmetic",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'ab' * 3 }} {{ [1] + [2] }}",
     "{}",
     "3 -4 2 3.5 1024 7 9 ababab [1, 2]"},
    {"StringEscapes",
     "{{ 'a\\nb\\t\\'q\\' \\u00e9 \\x41' }}",
     "{}",
     "a\nb\t'q' \xc3""\xa9"" A"},
    {"ConcatTilde",
     "{{ 'a' ~ 1 ~ none ~ undefined_var }}",
     "{}",
     "a1None"},
    {"Comparisons",
     "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 2 in [1, 2] }} {{ 'b' in 'abc' }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ true == 1 }}",
     "{}",
     "True True True True True True True True"},
    {"LogicReturnsOperands",
     "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ not none }} {{ [] or {} }}",
     "{}",
     "x b True {}"},
    {"Ternary",
     "{{ 'y' if x else 'n' }} {{ 'y' if not x else 'n' }} [{{ 'y' if x }}]",
     "{\"x\": 0}",
     "n y []"},
    {"UndefinedIsEmptyAndFalsy",
     "[{{ missing }}]{% if missing %}t{% else %}f{% endif %}{{ missing is defined }}{{ missing is undefined }}{{ missing | length }}",
     "{}",
     "[]fFalseTrue0"},
    {"AttributeVsItem",
     "{{ d.a }} {{ d['a'] }} {{ d.items()|list }} [{{ d.nope }}] [{{ none.x }}] [{{ 'abc'.nope }}]",
     "{\"d\": {\"a\": 1, \"b\": 2}}",
     "1 1 [('a', 1), ('b', 2)] [] [] []"},
    {"IndexAndSlices",
     "{{ s[0] }}{{ s[-1] }} {{ s[1:] }} {{ s[::-1] }} {{ s[:2] }} {{ l[1:3] }} {{ l[::2] }} {{ l[-2:] }} [{{ l[10] }}]",
     "{\"s\": \"h\xc3""\xa9""llo\", \"l\": [1, 2, 3, 4, 5]}",
     "ho \xc3""\xa9""llo oll\xc3""\xa9""h h\xc3""\xa9"" [2, 3] [1, 3, 5] [4, 5] []"},
    {"ForLoopVariables",
     "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
     "{\"xs\": [\"a\", \"b\", \"c\"]}",
     "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|"},
    {"ForElseAndFilter",
     "{% for x in xs if x > 1 %}{{ x }}{{ loop.last }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}",
     "{\"xs\": [1, 2, 3]}",
     "2False3True|empty"},
    {"ForUnpackDictItems",
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
     "{\"d\": {\"z\": 1, \"a\": 2}}",
     "z=1;a=2;za"},
    {"BreakContinue",
     "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "{}",
     "023"},
    {"LoopScopeDoesNotLeak",
     "{% set x = 'o' %}{% for i in range(2) %}[{{ x }}]{% set x = i %}({{ x }}){% endfor %}{{ x }}",
     "{}",
     "[o](0)[o](1)o"},
    {"NamespaceCarriesAcrossLoop",
     "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}",
     "{}",
     "6 0123"},
    {"LoopCycleAndPrevNext",
     "{% for x in 'abc' %}{{ loop.cycle('o', 'e') }}{{ loop.previtem }}{{ loop.nextitem }}|{% endfor %}",
     "{}",
     "ob|eac|ob|"},
    {"NestedLoops",
     "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %};{% endfor %}",
     "{}",
     "1x11y2;2x12y2;"},
    {"IfElifElse",
     "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}",
     "{}",
     "one two many "},
    {"SetTupleAndBlock",
     "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}x{{ a }}y{% endset %}[{{ blk }}]{% set up | upper %}shout{% endset %}{{ up }}",
     "{}",
     "12[x1y]SHOUT"},
    {"Macros",
     "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}",
     "{}",
     "Hi A! Hi B? Hi C."},
    {"MacroVarargsKwargs",
     "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}",
     "{}",
     "1(2, 3){'k': 'v'}"},
    {"MacroRecursion",
     "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | int) }}{% endif %}{% endmacro %}{{ fact(5) }}",
     "{}",
     "120"},
    {"CallBlock",
     "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}",
     "{}",
     "<inner>"},
    {"FilterBlock",
     "{% filter upper %}abc {{ 'd' }}{% endfilter %}",
     "{}",
     "ABC D"},
    {"WithBlock",
     "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]",
     "{}",
     "1x[]"},
    {"StringMethods",
     "{{ '  x y  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aBc'.upper() }}{{ 'aBc'.lower() }}|{{ \"they're bill's\".title() }}|{{ 'hello world'.capitalize() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'h\xc3""\xa9""llo'.find('l') }}|{{ ','.join(['a', 'b']) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'abc'.count('b') }}",
     "{}",
     "x y|a|a|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|TrueTrue|ABCabc|They'Re Bill'S|Hello world|bba|2|a,b|['a', 'b', 'c']|1"},
    {"StrFormat",
     "{{ '{} and {}'.format(1, 'x') }} {{ '{name}!'.format(name='n') }} {{ '%s-%d' % ('a', 3) }} {{ '%s' | format(5) }}",
     "{}",
     "1 and x n! a-3 5"},
    {"DictMethods",
     "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}",
     "{\"d\": {\"a\": 1, \"b\": [2]}}",
     "1 None 0 ['a', 'b'] [1, [2]] [('a', 1), ('b', [2])]"},
    {"StringFilters",
     "{{ '  x  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello wORLD' | capitalize }}|{{ 'hello-world foo' | title }}|{{ 'aXa' | replace('a', 'b') }}|{{ 1 | string }}|{{ none | string }}|{{ 'x' | safe }}|{{ '<a&\"' | e }}|{{ 'ab' | center(6) }}|{{ 'one two three' | wordcount }}",
     "{}",
     "x|ABC|abc|Hello world|Hello-World Foo|bXb|1|None|x|&lt;a&amp;&#34;|  ab  |3"},
    {"NumberFilters",
     "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '1.5' | float }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 5 | round }} {{ -3 | abs }}",
     "{}",
     "42 4 0 7 3 1.5 2.0 4.0 2.57 3.0 5 3"},
    {"DefaultFilter",
     "{{ missing | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ none | d('x') }} {{ 0 | default('z', boolean=true) }}",
     "{}",
     "d  d None z"},
    {"SequenceFilters",
     "{{ l | length }} {{ l | first }} {{ l | last }} {{ l | join('-') }} {{ l | reverse | list }} {{ l | sort }} {{ l | sort(reverse=true) }} {{ l | min }} {{ l | max }} {{ l | sum }} {{ l | unique | list }} {{ 'abc' | list }} {{ 'abc' | first }} {{ 'h\xc3""\xa9""llo' | length }}",
     "{\"l\": [3, 1, 2, 3]}",
     "4 3 3 3-1-2-3 [3, 2, 1, 3] [1, 2, 3, 3] [3, 3, 2, 1] 1 3 9 [3, 1, 2] ['a', 'b', 'c'] a 5"},
    {"MapSelectReject",
     "{{ users | map(attribute='name') | join(', ') }}|{{ users | selectattr('admin') | map(attribute='name') | list }}|{{ users | rejectattr('admin') | map(attribute='name') | list }}|{{ users | selectattr('name', 'equalto', 'b') | list | length }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}|{{ ['a', 'B'] | map('upper') | list }}|{{ [0, 1, '', 'x'] | select | list }}|{{ users | map(attribute='missing', default='?') | list }}",
     "{\"users\": [{\"name\": \"a\", \"admin\": true}, {\"name\": \"b\", \"admin\": false}]}",
     "a, b|['a']|['b']|1|[1, 3]|[1, 3]|['A', 'B']|[1, 'x']|['?', '?']"},
    {"SortByAttributeAndDictsort",
     "{{ users | sort(attribute='age') | map(attribute='name') | join }} {{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}",
     "{\"users\": [{\"name\": \"x\", \"age\": 3}, {\"name\": \"y\", \"age\": 1}], \"d\": {\"b\": 1, \"a\": 2}}",
     "yx [('a', 2), ('b', 1)] [('a', 2), ('b', 1)] ['A', 'b', 'c'] ['A', 'b', 'c']"},
    {"ItemsAndDictFilters",
     "{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %} {{ missing | items | list }} {{ d | list }} {{ dict(a=1, b='x') }}",
     "{\"d\": {\"x\": 1, \"y\": 2}}",
     "x1y2 [] ['x', 'y'] {'a': 1, 'b': 'x'}"},
    {"Indent",
     "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'x\\ny' | indent('> ') }}",
     "{}",
     "a\n    b\n\n    c|  a\n  b|a\n  \n  b|x\n> y"},
    {"ToJsonDefaults",
     "{{ v | tojson }}",
     "{\"v\": {\"b\": [1, 2.5, null, true, \"\xc3""\xa9""\\\"\\\\\\n\\u0001\"], \"a\": {}, \"c\": []}}",
     "{\"b\": [1, 2.5, null, true, \"\xc3""\xa9""\\\"\\\\\\n\\u0001\"], \"a\": {}, \"c\": []}"},
    {"ToJsonIndentAndOptions",
     "{{ v | tojson(indent=2) }}|{{ v | tojson(sort_keys=true) }}|{{ v | tojson(separators=(',', ':')) }}|{{ '\xc3""\xa9""' | tojson(ensure_ascii=true) }}|{{ 1e100 | tojson }}|{{ [] | tojson(indent=4) }}",
     "{\"v\": {\"z\": [1, {\"y\": \"x\"}], \"a\": null}}",
     "{\n  \"z\": [\n    1,\n    {\n      \"y\": \"x\"\n    }\n  ],\n  \"a\": null\n}|{\"a\": null, \"z\": [1, {\"y\": \"x\"}]}|{\"z\":[1,{\"y\":\"x\"}],\"a\":null}|\"\\u00e9\"|1e+100|[]"},
    {"Tests",
     "{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ 'a' is string }}{{ d is mapping }}{{ l is sequence }}{{ 'a' is iterable }}{{ 1 is iterable }}{{ none is none }}{{ true is boolean }}{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 'a' is in 'abc' }}{{ 2 is eq 2 }}{{ 3 is gt 2 }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ none is sameas none }}{{ range is callable }}{{ d is not mapping }}{{ missing is iterable }}",
     "{\"d\": {}, \"l\": []}",
     "TrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrue"},
    {"SelectAttrIsDefined",
     "{{ msgs | selectattr('tool_calls', 'defined') | list | length }} {{ msgs | rejectattr('tool_calls', 'defined') | map(attribute='role') | join }}",
     "{\"msgs\": [{\"role\": \"a\", \"tool_calls\": []}, {\"role\": \"b\"}]}",
     "1 b"},
    {"RangeAndJoiner",
     "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }}{% set sep = joiner('|') %}{% for x in 'ab' %}{{ sep() }}{{ x }}{% endfor %}",
     "{}",
     "[0, 1, 2] [1, 3, 5] [3, 2, 1]a|b"},
    {"StrftimeNow",
     "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %A %B') }}",
     "{}",
     "26 Jul 2024 2024-07-26 Friday July"},
    {"ListAndDictLiteralsWithTrailingComma",
     "{{ [1, 2,] }} {{ {'a': 1,} }} {{ ('x', 'y') }}",
     "{}",
     "[1, 2] {'a': 1} ('x', 'y')"},
    {"FloatRepr",
     "{{ 1.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ 123456789012345678.0 }} {{ 1/3 }} {{ -0.5 }} {{ 1e15 }}",
     "{}",
     "1.0 0.0001 1e-05 1.2345678901234568e+17 0.3333333333333333 -0.5 1000000000000000.0"},
    {"PythonRepr",
     "{{ [\"it's\", 'a\"b', 'plain', 'tab\\t', none, 1.5, (1,)] }}",
     "{}",
     "[\"it's\", 'a\"b', 'plain', 'tab\\t', None, 1.5, (1,)]"},
    {"MessagesLoopLikeTemplates",
     "{% for m in messages %}{% if m['role'] == 'system' %}S:{{ m['content'] | trim }}{% elif m.role == 'user' %}U:{{ m.content }}{% else %}A:{{ m.content }}{% endif %}{% if not loop.last %}\n{% endif %}{% endfor %}{% if add_generation_prompt %}\nA:{% endif %}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \" sys \"}, {\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}], \"add_generation_prompt\": true}",
     "S:sysU:hiA:yoA:"},
    {"NamespaceMessagesReverse",
     "{% set ns = namespace(last_user=-1) %}{% for m in messages[::-1] %}{% if ns.last_user == -1 and m.role == 'user' %}{% set ns.last_user = messages|length - 1 - loop.index0 %}{% endif %}{% endfor %}{{ ns.last_user }}",
     "{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\"}, {\"role\": \"user\"}, {\"role\": \"assistant\"}]}",
     "2"},
    {"ContentIsStringOrList",
     "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %};{% endfor %}",
     "{\"messages\": [{\"content\": \"plain\"}, {\"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"t\"}]}]}",
     "plain;t;"},
    {"ThinkSplitQwen3Style",
     "{% set c = m.content.split('</think>')[-1].lstrip('\\n') %}{{ c }}|{{ m.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
     "{\"m\": {\"content\": \"<think>\\nreason\\n</think>\\n\\nanswer\"}}",
     "answer|reason"},
    {"WhitespaceControlInLoop",
     "{%- for x in [1, 2] %}\n    {{- x }}\n{%- endfor %}\nend",
     "{}",
     "12end"},
    {"LstripBlocksWithComment",
     "a\n    {# comment #}\nb",
     "{}",
     "a\nb"},
    {"UnicodeCase",
     "{{ '\xc3""\xa9""a' | upper }} {{ '\xc3""\x89""A'.lower() }} {{ '\xc3""\x9f""x'.title() }}",
     "{}",
     "\xc3""\x89""A \xc3""\xa9""a Ssx"},
};
// clang-format on

absl::StatusOr<std::string> Render(const std::string& source, const std::string& context_json) {
  TM_ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::Parse(source));
  ChatTemplateInputs inputs;
  auto context = nlohmann::ordered_json::parse(context_json);
  if (context.contains("messages")) inputs.messages = context["messages"];
  if (context.contains("add_generation_prompt")) {
    inputs.add_generation_prompt = context["add_generation_prompt"].get<bool>();
  }
  context.erase("messages");
  context.erase("add_generation_prompt");
  inputs.extra_context = context;
  inputs.now = absl::CivilSecond(2024, 7, 26, 0, 0, 0);
  return tmpl.Render(inputs);
}

class JinjaFeatureTest : public ::testing::TestWithParam<Case> {};

TEST_P(JinjaFeatureTest, RendersLikePythonJinja2) {
  const Case& c = GetParam();
  absl::StatusOr<std::string> out = Render(c.source, c.context);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, c.expected) << "template: " << c.source;
}

INSTANTIATE_TEST_SUITE_P(Features, JinjaFeatureTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// Errors where Python jinja2 raises, with its wording.
struct ErrorCase {
  const char* name;
  const char* source;
  const char* message_part;
};

const ErrorCase kRenderErrors[] = {
    {"AttributeOfUndefined", "{{ missing.attr }}", "'missing' is undefined"},
    {"ItemOfUndefined", "{{ missing[0] }}", "'missing' is undefined"},
    {"UndefinedPlusString", "{{ missing + 'x' }}", "'missing' is undefined"},
    {"StringPlusInt", "{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str"},
    {"IntPlusString", "{{ 1 + 'a' }}", "unsupported operand type(s) for +: 'int' and 'str'"},
    {"ElementOfEmptyList", "{{ [][0]['role'] }}", "'list object' has no element 0"},
    {"CallNonCallable", "{{ 1() }}", "'int' object is not callable"},
    {"IterateInt", "{% for x in 5 %}{% endfor %}", "'int' object is not iterable"},
    {"DivideByZero", "{{ 1 // 0 }}", "integer division or modulo by zero"},
    {"LengthOfInt", "{{ 5 | length }}", "object of type 'int' has no len()"},
    {"ToJsonUndefined", "{{ missing | tojson }}", "not JSON serializable"},
    {"UnknownFilter", "{{ 1 | nosuchfilter }}", "no filter named 'nosuchfilter'"},
    {"MutatingMethodRefused", "{% set l = [] %}{{ l.append(1) }}", "is unsafe"},
    {"AssignAttributeOfNonNamespace", "{% set d = {} %}{% set d.x = 1 %}", "non-namespace"},
    {"MacroTooManyArguments", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
     "takes not more than 1 argument(s)"},
    {"UnpackMismatch", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", "too many values to unpack"},
    {"OrderingMixedTypes", "{{ 1 < 'a' }}", "'<' not supported"},
};

class JinjaRenderErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(JinjaRenderErrorTest, FailsWithPythonsMessageAndLine) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<std::string> out = Render(c.source, "{}");
  ASSERT_FALSE(out.ok()) << "rendered: " << *out;
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), ::testing::HasSubstr(c.message_part));
  EXPECT_THAT(std::string(out.status().message()),
              ::testing::StartsWith("chat template: line 1: "));
}

INSTANTIATE_TEST_SUITE_P(Errors, JinjaRenderErrorTest, ::testing::ValuesIn(kRenderErrors),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(JinjaErrorTest, RaiseExceptionMessageIsVerbatim) {
  absl::StatusOr<std::string> out =
      Render("a\n{% if true %}{{ raise_exception('Roles must alternate') }}{% endif %}", "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Roles must alternate");
}

TEST(JinjaErrorTest, RenderErrorNamesTheLine) {
  absl::StatusOr<std::string> out = Render("line1\nline2\n{{ missing.attr }}", "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "chat template: line 3: 'missing' is undefined");
}

struct SyntaxCase {
  const char* source;
  const char* message_part;
};

TEST(JinjaErrorTest, SyntaxErrorsNameLineAndColumn) {
  const SyntaxCase cases[] = {
      {"ok\n{% if x %}never closed",
       "line 2, column 23: unexpected end of template, expected 'endif'"},
      {"{{ 'unterminated }}", "line 1, column 4: unterminated string literal"},
      {"a\nb {{ x ) }}", "line 2, column 8: unexpected ')'"},
      {"{% include 'other.jinja' %}", "line 1, column 4: unsupported or unknown tag 'include'"},
      {"{# never closed", "line 1, column 1: missing end of comment tag"},
      {"{{ x y }}", "line 1, column 6: expected end of print statement, got 'y'"},
      {"{% for x in %}{% endfor %}", "line 1, column 13: expected an expression"},
      {"{{ 1 + }}", "line 1, column 8: unexpected end of print statement"},
      {"{% endfor %}", "unsupported or unknown tag 'endfor'"},
  };
  for (const SyntaxCase& c : cases) {
    absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(c.source);
    ASSERT_FALSE(tmpl.ok()) << c.source;
    EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(tmpl.status().message()), ::testing::HasSubstr(c.message_part))
        << c.source;
  }
}

TEST(JinjaInputsTest, ToolsAndSpecialTokensAreUndefinedUnlessGiven) {
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(
      "{{ tools is defined }} {{ bos_token is defined }} [{{ eos_token }}] {{ "
      "add_generation_prompt }}");
  ASSERT_TRUE(tmpl.ok());
  ChatTemplateInputs inputs;
  EXPECT_EQ(*tmpl->Render(inputs), "False False [] False");
  inputs.tools = nlohmann::ordered_json::array();
  inputs.bos_token = "<s>";
  inputs.eos_token = "</s>";
  inputs.add_generation_prompt = true;
  EXPECT_EQ(*tmpl->Render(inputs), "True True [</s>] True");
}

TEST(JinjaInputsTest, JsonKeyOrderIsPreserved) {
  absl::StatusOr<ChatTemplate> tmpl =
      ChatTemplate::Parse("{{ tools[0] | tojson }}{% for k in tools[0] %} {{ k }}{% endfor %}");
  ASSERT_TRUE(tmpl.ok());
  ChatTemplateInputs inputs;
  inputs.tools = nlohmann::ordered_json::parse(R"([{"zeta": 1, "alpha": {"y": 2, "b": 3}}])");
  EXPECT_EQ(*tmpl->Render(inputs), R"({"zeta": 1, "alpha": {"y": 2, "b": 3}} zeta alpha)");
}

TEST(JinjaInputsTest, FieldsTakePrecedenceOverExtraContext) {
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse("{{ messages | length }} {{ custom }}");
  ASSERT_TRUE(tmpl.ok());
  ChatTemplateInputs inputs;
  inputs.messages = nlohmann::ordered_json::parse(R"([{"role": "user"}])");
  inputs.extra_context = nlohmann::ordered_json::parse(R"({"messages": [], "custom": "c"})");
  EXPECT_EQ(*tmpl->Render(inputs), "1 c");
  inputs.messages = nlohmann::ordered_json::object();
  EXPECT_EQ(tmpl->Render(inputs).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JinjaInputsTest, ParsedTemplateIsReusableAndCopiesShareIt) {
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse("{% set x = custom %}{{ x }}");
  ASSERT_TRUE(tmpl.ok());
  ChatTemplate copy = *tmpl;
  ChatTemplateInputs a;
  a.extra_context["custom"] = "first";
  ChatTemplateInputs b;
  b.extra_context["custom"] = "second";
  EXPECT_EQ(*tmpl->Render(a), "first");
  EXPECT_EQ(*copy.Render(b), "second");
  EXPECT_EQ(*tmpl->Render(a), "first");  // `set` never leaks into the next render
}

}  // namespace
}  // namespace tokenmill
