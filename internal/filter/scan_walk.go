package filter

import "github.com/kseal/kseal/internal/codec"

// Until codec scans a Fetch or ShareFetch response in one walk
// (codec.FetchScan), fetchScan and shareFetchScan stand in for them with
// the walkers: a walk that records the partitions (endpoints left as they
// are) and a walk that writes the edits and maps the endpoints.

type walkPart struct {
	topic     string
	id        [16]byte
	partition int32
	code      int16
	records   []byte

	setRecords bool
	newRecords []byte
	setError   bool
	newError   int16
}

type walkScan struct {
	body    []byte
	version int16
	m       codec.AddressMapper
	parts   []walkPart
}

func (s *walkScan) start(body []byte, version int16, m codec.AddressMapper) {
	s.Reset()
	s.body, s.version, s.m = body, version, m
}

func (s *walkScan) add(topic string, id [16]byte, partition int32, code int16, records []byte) {
	s.parts = append(s.parts, walkPart{topic: topic, id: id, partition: partition, code: code, records: records})
}

func (s *walkScan) Len() int               { return len(s.parts) }
func (s *walkScan) Topic(i int) string     { return s.parts[i].topic }
func (s *walkScan) TopicID(i int) [16]byte { return s.parts[i].id }
func (s *walkScan) Partition(i int) int32  { return s.parts[i].partition }
func (s *walkScan) ErrorCode(i int) int16  { return s.parts[i].code }
func (s *walkScan) Records(i int) []byte   { return s.parts[i].records }
func (s *walkScan) SetRecords(i int, b []byte) {
	s.parts[i].setRecords, s.parts[i].newRecords = true, b
}
func (s *walkScan) SetErrorCode(i int, code int16) {
	s.parts[i].setError, s.parts[i].newError = true, code
}

func (s *walkScan) Reset() {
	clear(s.parts)
	s.parts = s.parts[:0]
	s.body, s.m = nil, nil
}

type fetchScan struct {
	walkScan
	w codec.FetchWalker
}

func (s *fetchScan) Scan(body []byte, version int16, m codec.AddressMapper) error {
	s.start(body, version, m)
	s.w.Mapper = keepEndpoints
	_, _, err := s.w.Walk(nil, body, version, func(p *codec.FetchPartition) error {
		s.add(p.Topic, p.TopicID, p.Partition, p.ErrorCode, p.Records)
		return nil
	})
	if err != nil {
		s.Reset()
	}
	return err
}

func (s *fetchScan) Splice(dst []byte) ([]byte, bool) {
	s.w.Mapper = s.m
	i := 0
	out, changed, err := s.w.Walk(dst, s.body, s.version, func(p *codec.FetchPartition) error {
		wp := &s.parts[i]
		i++
		if wp.setError {
			p.SetErrorCode(wp.newError)
		}
		if wp.setRecords {
			p.SetRecords(wp.newRecords)
		}
		return nil
	})
	if err != nil { // the body was scanned: cannot happen
		panic(err)
	}
	return out, changed
}

type shareFetchScan struct {
	walkScan
	w codec.ShareFetchWalker
}

func (s *shareFetchScan) Scan(body []byte, version int16, m codec.AddressMapper) error {
	s.start(body, version, m)
	s.w.Mapper = keepEndpoints
	_, _, err := s.w.Walk(nil, body, version, func(p *codec.ShareFetchPartition) error {
		s.add("", p.TopicID, p.Partition, p.ErrorCode, p.Records)
		return nil
	})
	if err != nil {
		s.Reset()
	}
	return err
}

func (s *shareFetchScan) Splice(dst []byte) ([]byte, bool) {
	s.w.Mapper = s.m
	i := 0
	out, changed, err := s.w.Walk(dst, s.body, s.version, func(p *codec.ShareFetchPartition) error {
		wp := &s.parts[i]
		i++
		if wp.setError {
			p.SetErrorCode(wp.newError)
		}
		if wp.setRecords {
			p.SetRecords(wp.newRecords)
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out, changed
}
