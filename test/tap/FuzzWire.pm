# FuzzWire.pm: a minimal PostgreSQL frontend/backend protocol (v3) client for
# the fuzz test. It speaks the protocol itself, over the server's Unix socket,
# so that the test can send raw bytes as a binary parameter of a type (the
# server then runs the type's receive function on them, as it does for any
# client sending binary parameters) and learn where each error came from: an
# error before BindComplete was raised while the parameters were read (by the
# type's input or receive function); one after it, by the query. Requests are
# pipelined (Bind, Execute, Sync for each input; one round trip per batch), so
# a hundred thousand inputs take seconds. Only trust authentication is
# supported, as PostgreSQL::Test::Cluster sets up for local connections.
package FuzzWire;

use strict;
use warnings;
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);

# Connect to the server listening on $host (a socket directory) and $port as $user to $db.
sub new
{
	my ($class, %opt) = @_;
	my $path = "$opt{host}/.s.PGSQL.$opt{port}";
	my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path)
	  or die "cannot connect to $path: $!";
	binmode $sock;
	my $self = bless { sock => $sock, inbuf => '', pid => undef, dead => 0 }, $class;
	my $body = pack('N', 196608);
	$body .= "$_\0$opt{$_ eq 'database' ? 'db' : $_}\0" for ('user', 'database');
	$body .= "\0";
	$self->_write(pack('N', 4 + length $body) . $body);
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		if ($type eq 'R')
		{
			my $code = unpack('N', $msg);
			die "authentication method $code is not supported" if $code != 0;
		}
		elsif ($type eq 'K') { $self->{pid} = unpack('N', $msg); }
		elsif ($type eq 'E') { die 'connection failed: ' . _error_fields($msg)->{M}; }
		elsif ($type eq 'Z') { last; }
	}
	return $self;
}

# The backend's process id, from BackendKeyData.
sub pid { return $_[0]->{pid}; }

# Whether the connection was lost (the backend died).
sub dead { return $_[0]->{dead}; }

# Run one simple query; returns { rows => [[...], ...], error => {C => sqlstate, M => message, ...} }.
sub query
{
	my ($self, $sql) = @_;
	$self->_write(_msg('Q', "$sql\0"));
	my $res = { rows => [] };
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		last if !defined $type;
		if ($type eq 'D') { push @{ $res->{rows} }, _data_row($msg); }
		elsif ($type eq 'E') { $res->{error} //= _error_fields($msg); }
		elsif ($type eq 'Z') { return $res; }
	}
	$res->{error} = { C => 'lost', M => 'connection lost' };
	return $res;
}

# Bring the stream back in step after a statement timeout. A timeout that expires
# just as a query finishes is raised once the backend waits for the next command: an
# ErrorResponse and ReadyForQuery nobody asked for (likely on a slow server, such as
# one under valgrind), which the next query would take for its own, and every query
# after it the reply of the one before. Sends a marker query and drops everything
# up to its row (again with a new marker if that one was cancelled in turn); returns
# false when the connection is lost.
sub resync
{
	my ($self) = @_;
	my $sel = IO::Select->new($self->{sock});
	for (1 .. 10)
	{
		my $tag = 'resync ' . ++$self->{resyncs};
		$self->_write(_msg('Q', "SELECT '$tag'\0"));
		my $found = 0;
		while (length $self->{inbuf} >= 5 || $sel->can_read(10))
		{
			my ($type, $msg) = $self->_read_message;
			return 0 if !defined $type;
			$found = 1 if $type eq 'D' && (_data_row($msg)->[0] // '') eq $tag;
			return 1 if $type eq 'Z' && $found;
		}
	}
	die 'the server did not answer a marker query';
}

# Run a simple query that must succeed; returns its rows. A statement timeout
# (57014) meant for the query before it is passed over (see resync).
sub do_ok
{
	my ($self, $sql) = @_;
	my $res = $self->query($sql);
	$res = $self->query($sql) if $res->{error} && $res->{error}{C} eq '57014' && $self->resync;
	die "query failed: $res->{error}{C} $res->{error}{M}\n$sql" if $res->{error};
	return $res->{rows};
}

# Prepare statement $name from $sql with parameter type oids @oids.
sub prepare
{
	my ($self, $name, $sql, @oids) = @_;
	$self->_write(_msg('P', "$name\0$sql\0" . pack('n', scalar @oids) . join('', map { pack('N', $_) } @oids))
		  . _msg('S', ''));
	my $err;
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		die 'connection lost' if !defined $type;
		$err //= _error_fields($msg) if $type eq 'E';
		last if $type eq 'Z';
	}
	die "prepare $name failed: $err->{C} $err->{M}" if $err;
	return;
}

# Execute prepared statement $name once per element of $inputs, each an array
# of parameters [format (0 text, 1 binary), bytes or undef for NULL], each in
# its own transaction (Bind, Execute, Sync). Returns one result per input:
# { stage => 'bind' | 'execute' | 'ok', error => {...}, rows => [[...]] }
# ('bind': the parameters were rejected; 'execute': the query failed).
sub run_batch
{
	my ($self, $name, $inputs) = @_;
	my $out = '';
	for my $params (@$inputs)
	{
		my $b = "\0$name\0" . pack('n', scalar @$params) . join('', map { pack('n', $_->[0]) } @$params)
		  . pack('n', scalar @$params);
		for my $p (@$params)
		{
			$b .= defined $p->[1] ? pack('N', length $p->[1]) . $p->[1] : pack('l>', -1);
		}
		$b .= pack('n', 0);
		$out .= _msg('B', $b) . _msg('E', "\0" . pack('N', 0)) . _msg('S', '');
	}
	my @results;
	my $cur = { stage => 'bind', rows => [] };
	my $sel = IO::Select->new($self->{sock});
	while (@results < @$inputs)
	{
		# Write what the socket takes while reading what comes back, so neither side blocks.
		my $progress = 0;
		if (length $out && $sel->can_write(0))
		{
			my $n = syswrite($self->{sock}, $out, 65536);
			if (!defined $n) { $self->{dead} = 1; last; }
			substr($out, 0, $n, '');
			$progress = 1;
		}
		while (my ($type, $msg) = $self->_take_message)
		{
			if ($type eq '2') { $cur->{stage} = 'execute'; }
			elsif ($type eq 'D') { push @{ $cur->{rows} }, _data_row($msg); }
			elsif ($type eq 'C') { $cur->{stage} = 'ok' if !$cur->{error}; }
			elsif ($type eq 'E') { $cur->{error} //= _error_fields($msg); }
			elsif ($type eq 'Z')
			{
				push @results, $cur;
				$cur = { stage => 'bind', rows => [] };
			}
			$progress = 1;
		}
		next if $progress && length $out;
		last if @results == @$inputs;
		my @ready = IO::Select->new($self->{sock})->can_read(length $out ? 0.01 : 60);
		if (@ready)
		{
			my $n = sysread($self->{sock}, my $chunk, 262144);
			if (!$n) { $self->{dead} = 1; last; }
			$self->{inbuf} .= $chunk;
		}
		elsif (!length $out)
		{
			$self->{dead} = 1;    # no answer for a minute: count it as lost
			last;
		}
	}
	push @results, { stage => 'lost', error => { C => 'lost', M => 'connection lost' } } while @results < @$inputs;
	return \@results;
}

# Say goodbye.
sub close
{
	my ($self) = @_;
	return if $self->{dead};
	$self->_write(_msg('X', ''));
	close $self->{sock};
	return;
}

# ---- internals ----

sub _msg { return $_[0] . pack('N', 4 + length $_[1]) . $_[1]; }

sub _write
{
	my ($self, $data) = @_;
	while (length $data)
	{
		my $n = syswrite($self->{sock}, $data);
		die "write failed: $!" if !defined $n;
		substr($data, 0, $n, '');
	}
	return;
}

# The next complete message already read, or an empty list.
sub _take_message
{
	my ($self) = @_;
	return () if length $self->{inbuf} < 5;
	my ($type, $len) = unpack('a N', $self->{inbuf});
	return () if length $self->{inbuf} < 1 + $len;
	my $msg = substr($self->{inbuf}, 5, $len - 4);
	substr($self->{inbuf}, 0, 1 + $len, '');
	return ($type, $msg);
}

# The next message, reading as needed; an empty list when the connection is lost.
sub _read_message
{
	my ($self) = @_;
	while (1)
	{
		my @m = $self->_take_message;
		return @m if @m;
		my $n = sysread($self->{sock}, my $chunk, 262144);
		if (!$n) { $self->{dead} = 1; return (); }
		$self->{inbuf} .= $chunk;
	}
}

sub _error_fields
{
	my ($msg) = @_;
	my %f;
	while ($msg =~ /\G([^\0])([^\0]*)\0/gc) { $f{$1} = $2; }
	return \%f;
}

sub _data_row
{
	my ($msg) = @_;
	my $n = unpack('n', $msg);
	my $pos = 2;
	my @cols;
	for (1 .. $n)
	{
		my $len = unpack('l>', substr($msg, $pos, 4));
		$pos += 4;
		if ($len < 0) { push @cols, undef; next; }
		push @cols, substr($msg, $pos, $len);
		$pos += $len;
	}
	return \@cols;
}

1;
