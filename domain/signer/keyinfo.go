package signer

// PolicyFor returns the policy that applies to the key with address pkh:
// its own, else the default policy (development only); nil when the key is
// not listed and so may not sign (Signatory's "inactive").
func (s *Service) PolicyFor(pkh string) *Policy { return s.policyFor(pkh) }
