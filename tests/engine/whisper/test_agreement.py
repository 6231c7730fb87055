"""Local agreement: only words two successive hypotheses share are sent, never twice."""

from __future__ import annotations

from stt.engine.interface import WordEvent
from stt.engine.whisper.agreement import LocalAgreement, after_sent, common_prefix, word_key


def hyp(text: str, start: float = 0.0, step: float = 0.5) -> list[WordEvent]:
    return [WordEvent(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split())]


def texts(words: list[WordEvent]) -> list[str]:
    return [w.text for w in words]


def heard_on(words: list[WordEvent], seconds: float = 3.0) -> tuple[list[WordEvent], float, float]:
    """A partial hypothesis decoded from audio that began at 0 s and ran on `seconds` past
    its last word: `LocalAgreement.update`'s arguments."""
    return words, 0.0, (words[-1].end_s if words else 0.0) + seconds


def test_word_key_ignores_case_and_punctuation() -> None:
    assert word_key("Vocale,") == word_key("vocale") == "vocale"
    assert word_key("aujourd'hui.") == "aujourd'hui"


def test_common_prefix_takes_the_newer_spelling() -> None:
    assert texts(common_prefix(hyp("la reconnaissance."), hyp("La reconnaissance vocale"))) == [
        "La",
        "reconnaissance",
    ]
    assert common_prefix(hyp("a b"), hyp("c b")) == []


def test_a_word_is_sent_once_two_hypotheses_agree() -> None:
    agreement = LocalAgreement()
    assert agreement.update(*heard_on(hyp("the quick"))) == []
    assert texts(agreement.update(*heard_on(hyp("the quick brow")))) == ["the", "quick"]
    assert texts(agreement.update(*heard_on(hyp("the quick brown fox")))) == []  # "brow" != "brown"
    assert texts(agreement.update(*heard_on(hyp("the quick brown fox jumps")))) == ["brown", "fox"]
    assert texts(agreement.finish(hyp("the quick brown fox jumps over"))) == ["jumps", "over"]
    assert texts(agreement.sent) == ["the", "quick", "brown", "fox", "jumps", "over"]


def test_finish_after_nothing_agreed_sends_the_whole_hypothesis() -> None:
    agreement = LocalAgreement()
    agreement.update(*heard_on(hyp("hello")))
    assert texts(agreement.finish(hyp("hello world"))) == ["hello", "world"]


def test_a_changed_mind_about_sent_words_sends_nothing_twice() -> None:
    sent = hyp("the quick brown")  # ends at 1.5 s
    revised = hyp("a quick brown fox jumps")  # first word changed; times still line up
    assert texts(after_sent(sent, revised)) == ["fox", "jumps"]


def test_sent_times_never_go_backwards() -> None:
    sent = [WordEvent("one", 0.0, 1.0)]
    late = [WordEvent("uno", 0.0, 0.9), WordEvent("two", 0.9, 1.4)]
    out = after_sent(sent, late)
    assert texts(out) == ["two"] and out[0].start_s >= 1.0 and out[0].end_s >= out[0].start_s


def test_after_a_cut_the_repeated_words_are_dropped_by_text_not_times() -> None:
    """The window-cut bug: the new window starts a few sent words back; Whisper hears them
    again with other times (here the sent "time" ended late, as a window's last word does)."""
    sent = [*hyp("for the first", start=10.0, step=0.3), WordEvent("time", 10.9, 12.5)]
    again = [
        WordEvent("the", 10.3, 10.55),
        WordEvent("first", 10.55, 10.85),
        WordEvent("time,", 10.85, 11.1),
        WordEvent("unfolded", 11.3, 11.8),
        WordEvent("her", 11.8, 12.0),
    ]
    assert texts(after_sent(sent, again)) == ["unfolded", "her"]
    assert texts(LocalAgreement(sent).finish(again)) == ["unfolded", "her"]


def test_a_respelled_word_at_the_overlap_is_not_sent_again() -> None:
    sent = hyp("for the first time", start=10.0, step=0.3)
    again = hyp("the first times unfolded", start=10.3, step=0.3)  # "times": the same word
    assert texts(after_sent(sent, again)) == ["unfolded"]


def test_a_word_the_new_window_adds_after_the_overlap_is_kept() -> None:
    sent = hyp("for the first time", start=10.0, step=0.3)
    # Whisper dropped the last sent word; what starts later is new
    again = [*hyp("the first", start=10.3, step=0.3), WordEvent("unfolded", 11.5, 11.9)]
    assert texts(after_sent(sent, again)) == ["unfolded"]


def test_a_repeated_word_far_away_in_time_is_not_the_overlap() -> None:
    sent = hyp("we said no", start=0.0, step=0.5)
    later = [
        *hyp("we said no", start=0.0, step=0.5)[:2],
        WordEvent("yes", 1.0, 1.4),
        WordEvent("no", 5.0, 5.4),
    ]
    assert texts(after_sent(sent, later)) == ["no"]  # the "no" at 5 s is a new one


def test_a_sentence_that_starts_after_a_cut_keeps_its_capital() -> None:
    sent = hyp("her wings.", start=5.0)
    again = hyp("wings. as she touched", start=5.5)  # heard from mid-sentence: no capital
    assert texts(after_sent(sent, again)) == ["As", "she", "touched"]
    assert texts(after_sent(hyp("her wings"), hyp("her wings as she"))) == ["as", "she"]


def test_digits_a_newer_hypothesis_adds_to_the_last_sent_number_are_sent() -> None:
    """Regression (en-07 with a beam-search final): "415" was sent from partials, the final
    decode wrote "41555552671." where "415" stood and the agreement took it for a
    respelling of "415": the rest of the phone number was lost."""
    sent = hyp("My phone number is 415")
    final = [*sent[:4], WordEvent("41555552671.", sent[4].start_s, 5.4)]
    added = after_sent(sent, final)
    assert texts(added) == ["55552671."]
    assert added[0].start_s >= sent[-1].end_s
    assert texts(LocalAgreement(sent).finish(final)) == ["55552671."]
    assert texts(after_sent(hyp("ship"), hyp("shipped"))) == []  # a respelling adds no letters
    assert texts(after_sent(hyp("415"), hyp("4155"))) == []  # nor digits over the same audio
    assert texts(after_sent(hyp("a 12"), hyp("a 12"))) == []


def test_a_sent_number_a_newer_hypothesis_writes_in_groups_is_not_sent_again() -> None:
    """Regression (10-minute stream): "415552671," was sent, a later decode wrote the same
    audio as "415" "555" "2671" (with the digit the first one missed) and the last two groups
    went out again: "415552671, 555 2671"."""
    sent = [*hyp("My phone number is", start=10.0, step=0.4), WordEvent("415552671,", 11.6, 14.0)]
    again = [
        *hyp("phone number is", start=10.4, step=0.4),
        WordEvent("415", 11.6, 12.3),
        WordEvent("555", 12.4, 13.0),
        WordEvent("2671.", 13.1, 13.9),
        *hyp("It was", start=14.5, step=0.3),
    ]
    assert texts(after_sent(sent, again)) == ["It", "was"]
    assert texts(LocalAgreement(sent).finish(again)) == ["It", "was"]
    # a short number is one only when equal: the groups that follow a sent "555" are new
    short = [*hyp("number is", start=10.8, step=0.4), WordEvent("555", 11.6, 12.2)]
    more = [*short, WordEvent("2671.", 12.3, 13.0)]
    assert texts(after_sent(short, more)) == ["2671."]


def test_a_sent_number_a_newer_hypothesis_spells_out_is_not_sent_again() -> None:
    """Regression (10-minute stream): "Tuesday, 12th twelfth of March": a decode wrote the
    sent "12th" as "the twelfth", further from its start than a respelling may be."""
    sent = [*hyp("moved to Tuesday,", start=20.0, step=0.4), WordEvent("12th", 21.2, 22.0)]
    spelled = [
        *hyp("to Tuesday,", start=20.4, step=0.4),
        WordEvent("the", 21.2, 21.5),
        WordEvent("twelfth", 21.6, 21.95),
        *hyp("of March.", start=22.0, step=0.3),
    ]
    assert texts(after_sent(sent, spelled)) == ["of", "March."]
    without_the = [*spelled[:2], *spelled[3:]]
    assert without_the[2].start_s - sent[-1].start_s > 0.35
    assert texts(after_sent(sent, without_the)) == ["of", "March."]
    # another number at the same place is another number
    other = [*spelled[:2], WordEvent("thirteenth", 21.6, 21.95), *spelled[4:]]
    assert texts(after_sent(sent, other)) == ["thirteenth", "of", "March."]


def timed(text: str) -> list[WordEvent]:
    """Words written "text@start-end", as a trace prints them."""
    out = []
    for item in text.split():
        word, _, span = item.rpartition("@")
        start, end = span.split("-")
        out.append(WordEvent(word, float(start), float(end)))
    return out


def test_a_long_utterance_that_spells_an_early_sent_word_anew_sends_nothing_twice() -> None:
    """A real-time 4-minute stream (benchmarks/long_form.py, 2026-12-04) sent "this afternoon"
    and then "afternoon. A quick": the utterance had 17 sent words, the newer hypotheses
    wrote two early ones differently ("voodoo" for "audio", "5" for "five"), so the overlap
    was looked for by text, only among the hypothesis's first 16 words, and the sent
    "afternoon" (its 17th) was not found; its new spelling "afternoon." ends later (it takes
    the pause), so it did not count as a respelling either, and was sent again."""
    sent = timed(
        "Streaming@0.0-0.6 speech@0.6-0.92 recognition@0.92-1.46 turns@1.46-2.1 I@2.1-2.4 "
        "audio@2.46-2.82 into@2.82-3.14 text.@3.14-3.84 Please@3.84-4.2 call@4.2-4.52 "
        "me@4.52-4.7 back@4.7-4.88 before@4.88-5.2 five@5.2-5.6 o'clock@5.6-5.94 "
        "this@5.94-6.16 afternoon@6.16-6.7"
    )
    newer = timed(
        "Streaming@0.0-0.62 speech@0.62-0.92 recognition@0.92-1.6 turns@1.6-2.16 I@2.16-2.4 "
        "voodoo@2.4-2.86 into@2.86-3.14 text.@3.14-3.84 Please@3.84-4.22 call@4.22-4.52 "
        "me@4.52-4.7 back@4.7-4.88 before@4.88-5.2 5@5.2-5.6 o'clock@5.6-5.92 this@5.92-6.14 "
        "afternoon.@6.14-7.16 A@7.16-7.36 quick@7.36-7.66"
    )
    assert texts(after_sent(sent, newer)) == ["A", "quick"]
    # and a cut decode of the same window that writes "five" and "live audio" right: the
    # words after the sent "quick" only
    cut = timed(
        "Streaming@0.0-0.62 speech@0.62-0.92 recognition@0.92-1.6 turns@1.6-2.16 live@2.16-2.46 "
        "audio@2.46-2.8 into@2.8-3.14 text.@3.14-3.86 Please@3.86-4.22 call@4.22-4.52 "
        "me@4.52-4.7 back@4.7-4.88 before@4.88-5.2 5@5.2-5.6 o'clock@5.6-5.92 this@5.92-6.14 "
        "afternoon.@6.14-7.18 The@7.18-7.36 quick@7.36-7.64 brown@7.64-7.98 fox@7.98-8.4"
    )
    assert texts(after_sent([*sent, *newer[-2:]], cut)) == ["brown", "fox"]  # sent: + "A quick"


def test_a_sent_number_heard_out_later_is_not_sent_beside_it() -> None:
    """A 10-minute stream (2026-12-04) sent "We ship 300" (two decodes agreed on "300" while
    "and twenty" was still being said), then every decode read "shipped 320 packages" with
    "320" over the sent number's audio and ending 0.03 s past the respelling limit: it was
    sent as a new word ("300 320 packages")."""
    sent = timed("March.@621.92-622.72 We@622.72-622.92 ship@622.94-623.18 300@623.18-623.92")
    newer = timed(
        "March,@621.94-622.74 we@622.74-622.92 shipped@622.92-623.24 320@623.24-624.34 "
        "packages@624.34-625.02 last.@625.02-625.48"
    )
    assert texts(after_sent(sent, newer)) == ["packages", "last."]
    # a number that starts later is a new word, as before
    later = timed("March,@621.94-622.74 we@622.74-622.92 ship@622.92-623.18 300@623.18-623.9 20@624.0-624.3")
    assert texts(after_sent(sent, later)) == ["20"]


def test_an_utterances_first_words_wait_for_audio_after_them() -> None:
    """Regression (en-08, traced): decodes of the first 1.1 and 1.7 s both heard "It wears a
    bright" and it was sent; every decode from 2.2 s on heard "It was"."""
    agreement = LocalAgreement()
    start = 0.067
    decodes = [
        (1.126, "It@0.07-0.47 wears@0.47-0.73 a@0.73-0.89 bright@0.89-1.07"),
        (1.676, "It@0.07-0.47 wears@0.47-0.73 a@0.73-0.91 bright@0.91-1.15 cold@1.15-1.47 day.@1.47-1.73"),
        (
            2.227,
            "It@0.07-0.47 was@0.47-0.67 a@0.67-0.91 bright@0.91-1.15 cold@1.15-1.43 day@1.43-1.69"
            " in@1.69-1.89 April.@1.89-2.27",
        ),
        (
            2.777,
            "It@0.07-0.47 was@0.47-0.67 a@0.67-0.91 bright@0.91-1.15 cold@1.15-1.43 day@1.43-1.71"
            " in@1.71-1.89 April,@1.89-2.65 at@2.65-2.83",
        ),
    ]
    sent = [texts(agreement.update(timed(words), start, start + heard)) for heard, words in decodes]
    assert sent == [[], ["It"], [], ["was", "a", "bright", "cold", "day", "in", "April,"]]


def test_a_full_stop_where_the_heard_audio_ended_waits_for_more_audio() -> None:
    """Regression (en-03, traced): two decodes that ended just after "Tuesday" both wrote
    "Tuesday." and it was sent with its full stop; the next one, which heard on, wrote
    "Tuesday, 12th of March"."""
    opening = "The@0.07-0.45 meeting@0.45-0.71 has@0.71-0.95 been@0.95-1.15 moved@1.15-1.41 to@1.41-1.65"
    agreement = LocalAgreement(timed(opening))  # sent from the earlier decodes
    start = 0.067

    def update(rest: str, heard: float) -> list[str]:
        return texts(agreement.update(timed(f"{opening} {rest}"), start, start + heard))

    assert update("Tuesday.@1.65-2.27", 2.227) == []
    assert update("Tuesday.@1.65-2.53", 2.777) == []
    later = "Tuesday,@1.65-2.55 12th@2.55-3.21 of@3.21-3.25"
    assert update(f"{later} March.@3.25-3.41", 3.358) == ["Tuesday,"]
    # "12th" waits for audio after it too (digits), "of" behind it, "March." until heard on
    assert update(f"{later} March.@3.27-3.95", 3.909) == []
    assert update(f"{later} March.@3.27-3.95 Please@4.3-4.6", 4.46) == ["12th", "of"]
    assert update(f"{later} March.@3.27-3.95 Please@4.3-4.6", 5.0) == ["March.", "Please"]


def test_a_number_waits_for_audio_after_it_so_it_is_sent_whole() -> None:
    """Regression (long-form stream, seed 2): two decodes that ended just after "three
    hundred" agreed on "300" and it was sent; the later ones wrote "320" over the same audio
    and "and twenty" was lost."""
    decodes = [
        (63.64, "300@62.82-63.32"),
        (64.22, "300@62.82-63.6 and@63.6-64.08 2.@64.08-64.2"),
        (64.77, "320@62.82-64.06 packs.@64.06-64.76"),
        (65.33, "320@62.82-64.06 packages@64.06-64.98 up.@64.98-65.3"),
        (65.91, "320@62.82-64.06 packages@64.06-64.98 last@64.98-65.38"),
    ]
    agreement = LocalAgreement()
    for heard, words in decodes:
        agreement.update(timed(f"We@62.0-62.48 shipped@62.48-62.82 {words}"), 62.0, heard)
    assert texts(agreement.sent) == ["We", "shipped", "320", "packages"]


def test_a_digit_run_both_hypotheses_end_on_waits_for_a_word_after_it() -> None:
    """Regression (en-07, traced, every run of the clip alone): the decodes of 5.0 and 5.6 s
    both wrote "415 5555 2671", two seconds after "5555" was said, and it was sent; the
    utterance's final decode wrote "415 555 2671" (the speaker said "five five five")."""
    opening = "My@0.07-0.49 phone@0.49-0.75 number@0.75-1.07 is@1.07-1.29"
    decodes = [
        (3.909, "415@1.27-1.91 555@1.91-3.59"),
        (4.459, "41555526@1.29-4.17"),
        (5.04, "415@1.29-1.91 5555@1.91-3.51 2671@3.51-4.79"),
        (5.591, "415@1.29-1.93 5555@1.93-3.61 2671.@3.61-5.55"),
    ]
    agreement = LocalAgreement()
    start = 0.067
    sent = [
        texts(agreement.update(timed(f"{opening} {rest}"), start, start + heard)) for heard, rest in decodes
    ]
    assert sent == [[], ["My", "phone", "number", "is"], [], []]
    final = timed(f"{opening} 415@1.29-1.91 555@1.91-3.53 2671@3.53-4.81")
    assert texts(agreement.finish(final)) == ["415", "555", "2671"]
    # a word after the digits in both hypotheses closes the run, and it goes out with them
    later = LocalAgreement()
    closed = timed(f"{opening} 415@1.29-1.91 555@1.91-3.53 2671@3.53-4.81 please@4.9-5.3")
    assert later.update(closed, start, 5.6) == []
    assert texts(later.update(closed, start, 6.1)) == [*texts(timed(opening)), "415", "555", "2671", "please"]
