package review

import (
	"errors"
	"testing"
)

func TestDecisionRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        Decision
		wantJust  string
		wantField string // "" for accepted
	}{
		{"confirmed", Decision{State: "confirmed"}, "", ""},
		{"back to untriaged", Decision{State: "untriaged", Comment: "needs a second look"}, "", ""},
		{"false positive by justification", Decision{State: "false_positive", Justification: "code_not_reachable"}, "code_not_reachable", ""},
		{"OpenVEX alias", Decision{State: "not_applicable", Justification: "inline_mitigations_already_exist"}, "protected_by_mitigating_control", ""},
		{"OpenVEX alias, any case", Decision{State: "false_positive", Justification: " Vulnerable_Code_Not_Present "}, "code_not_present", ""},
		{"OpenVEX only name", Decision{State: "not_applicable", Justification: "vulnerable_code_cannot_be_controlled_by_adversary"}, "vulnerable_code_cannot_be_controlled_by_adversary", ""},
		{"false positive in words", Decision{State: "false_positive", Comment: "the scanner matched a comment"}, "", ""},
		{"false positive without a reason", Decision{State: "false_positive"}, "", "justification"},
		{"not applicable without a reason", Decision{State: "not_applicable", Comment: "   "}, "", "justification"},
		{"accepted risk with a rationale", Decision{State: "risk_accepted", Justification: "protected_at_perimeter", Comment: "WAF rule 12"}, "protected_at_perimeter", ""},
		{"accepted risk without a rationale", Decision{State: "risk_accepted", Justification: "protected_at_perimeter"}, "", "comment"},
		{"justification on a confirmation", Decision{State: "confirmed", Justification: "requires_configuration"}, "", "justification"},
		{"unknown justification", Decision{State: "false_positive", Justification: "trust_me"}, "", "justification"},
		{"unknown state", Decision{State: "wontfix"}, "", "state"},
		{"NUL in comment", Decision{State: "confirmed", Comment: "a\x00b"}, "", "comment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.normalise()
			var de *DecisionError
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantField != "" && (!errors.As(err, &de) || de.Field != tc.wantField):
				t.Fatalf("error %v, want one about %s", err, tc.wantField)
			case tc.wantField == "" && got.Justification != tc.wantJust:
				t.Fatalf("justification %q, want %q", got.Justification, tc.wantJust)
			}
		})
	}
}
