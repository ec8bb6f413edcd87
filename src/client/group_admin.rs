//! Inspecting and administering consumer groups from a client (protocol.md section 16,
//! "Inspecting and administering groups"): the state and lag of groups, parked events, and
//! replay, reset and delete. Each call sends one request and waits for its answer; a refusal
//! (`NoSuchGroup`, `GroupInUse`, `NotParked`, `PermissionDenied`) is a [`ClientError::Server`].

use super::{Client, ClientError};
use crate::event::{EventId, StartPosition};
use crate::protocol::{
    ClientFrame, ErrorCode, ErrorScope, GroupAdmin, GroupAdminAction, GroupDetail, GroupInfo,
    GroupSettings, GroupsDetailReply, GroupsReply, GroupsRequest, ParkedReply, ParkedRequest,
    ServerFrame,
};

/// The most groups a listing ([`Client::groups`], [`Client::groups_detail`]) keeps: the largest
/// `groups.groups_max` a server accepts. A server that lists more (pages of new names with
/// `more` set, without end) is broken or hostile; without this bound the client kept every
/// group it was sent, growing without end (walk 11).
pub const GROUPS_LISTED_MAX: usize = 100_000;

impl Client {
    /// One page of the group list: the groups whose names sort after `after` (empty: from the
    /// first), as many as fit one frame; `more` says that another page follows.
    pub fn groups_page(&mut self, after: &str) -> Result<GroupsReply, ClientError> {
        let request = GroupsRequest {
            group: String::new(),
            after: after.to_string(),
        };
        self.groups_request(ClientFrame::GroupsRequest(request))
    }

    /// Every group, page by page (at most the server's group limit, 1024 by default). A
    /// server that lists more than [`GROUPS_LISTED_MAX`] gets [`ClientError::Protocol`]
    /// `MalformedFrame`.
    pub fn groups(&mut self) -> Result<Vec<GroupInfo>, ClientError> {
        every_page(
            |after| {
                let page = self.groups_page(after)?;
                Ok((page.groups, page.more))
            },
            |group| &group.name,
        )
    }

    /// The state and lag of one group.
    pub fn group_info(&mut self, name: &str) -> Result<GroupInfo, ClientError> {
        let request = GroupsRequest {
            group: name.to_string(),
            after: String::new(),
        };
        let reply = self.groups_request(ClientFrame::GroupsRequest(request))?;
        one_group(reply)
    }

    /// One page of a group's parked events, from log offset `from_offset` (0: the first), at
    /// most the server's `parked_list_max`; `more` says that another page follows (from the
    /// last offset + 1).
    pub fn parked_page(
        &mut self,
        name: &str,
        from_offset: u64,
    ) -> Result<ParkedReply, ClientError> {
        let request = ParkedRequest {
            group: name.to_string(),
            from_offset,
        };
        self.connection.send(&ClientFrame::ParkedRequest(request))?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Parked(reply) => {
                    // In log order from `from_offset`, so a caller paging from the last
                    // offset + 1 always moves forward (a server repeating a page would
                    // otherwise be asked again without end).
                    let mut next = from_offset;
                    for event in &reply.events {
                        if event.offset < next {
                            return Err(self.connection.fail_protocol(format!(
                                "the server listed parked offset {} where offsets from {next} \
                                 were asked for, in log order",
                                event.offset
                            )));
                        }
                        next = event.offset.saturating_add(1);
                    }
                    return Ok(reply);
                }
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Makes every parked event of the group deliverable again; returns the group afterwards.
    pub fn replay_parked(&mut self, name: &str) -> Result<GroupInfo, ClientError> {
        self.group_admin(name, GroupAdminAction::ReplayParked)
            .and_then(one_group)
    }

    /// Makes the parked events with these ids deliverable again (at most the server's
    /// `parked_list_max`, 1000 by default); when one of them is not parked, nothing is
    /// replayed and the answer is a `NotParked` error. Returns the group afterwards.
    pub fn replay_parked_ids(
        &mut self,
        name: &str,
        ids: &[EventId],
    ) -> Result<GroupInfo, ClientError> {
        self.group_admin(name, GroupAdminAction::ReplayIds(ids.to_vec()))
            .and_then(one_group)
    }

    /// Makes the parked events whose ids lie from `from` to `to` (both included) deliverable
    /// again; none is not an error. Returns the group afterwards.
    pub fn replay_parked_range(
        &mut self,
        name: &str,
        from: EventId,
        to: EventId,
    ) -> Result<GroupInfo, ClientError> {
        self.group_admin(name, GroupAdminAction::ReplayRange { from, to })
            .and_then(one_group)
    }

    /// Moves a group without members to `start`; returns the group afterwards.
    pub fn reset_group(
        &mut self,
        name: &str,
        start: StartPosition,
    ) -> Result<GroupInfo, ClientError> {
        self.group_admin(name, GroupAdminAction::Reset(start))
            .and_then(one_group)
    }

    /// Every group with its settings, page by page (GroupsDetailRequest lists, no members);
    /// at most [`GROUPS_LISTED_MAX`], as [`Client::groups`].
    pub fn groups_detail(&mut self) -> Result<Vec<GroupDetail>, ClientError> {
        every_page(
            |after| {
                let request = GroupsRequest {
                    group: String::new(),
                    after: after.to_string(),
                };
                let page = self.groups_detail_request(ClientFrame::GroupsDetailRequest(request))?;
                Ok((page.groups, page.more))
            },
            |detail| &detail.info.name,
        )
    }

    /// One group with its settings and its members' in-flight counts (GroupsDetailRequest;
    /// a server older than it closes the connection with MalformedFrame).
    pub fn group_detail(&mut self, name: &str) -> Result<GroupDetail, ClientError> {
        let request = GroupsRequest {
            group: name.to_string(),
            after: String::new(),
        };
        let reply = self.groups_detail_request(ClientFrame::GroupsDetailRequest(request))?;
        one_detail(reply)
    }

    /// Creates a group with this glob, start position and settings (0 fields: the server's
    /// defaults). An existing group with the same glob and settings is returned as it is;
    /// other settings are refused (GroupSettingsMismatch): use
    /// [`Client::update_group_settings`].
    pub fn create_group(
        &mut self,
        name: &str,
        glob: &str,
        start: StartPosition,
        settings: GroupSettings,
    ) -> Result<GroupDetail, ClientError> {
        let action = GroupAdminAction::Create {
            glob: glob.to_string(),
            start,
            settings,
        };
        self.group_admin_detail(name, action)
    }

    /// Changes a group's settings (0 fields stay as they are), also while members are joined.
    pub fn update_group_settings(
        &mut self,
        name: &str,
        settings: GroupSettings,
    ) -> Result<GroupDetail, ClientError> {
        self.group_admin_detail(name, GroupAdminAction::UpdateSettings(settings))
    }

    fn group_admin_detail(
        &mut self,
        name: &str,
        action: GroupAdminAction,
    ) -> Result<GroupDetail, ClientError> {
        let admin = GroupAdmin {
            group: name.to_string(),
            action,
        };
        self.groups_detail_request(ClientFrame::GroupAdmin(admin))
            .and_then(one_detail)
    }

    fn groups_detail_request(
        &mut self,
        request: ClientFrame,
    ) -> Result<GroupsDetailReply, ClientError> {
        self.connection.send(&request).map_err(older_server)?;
        loop {
            match self.connection.receive().map_err(older_server)? {
                ServerFrame::GroupsDetail(reply) => return Ok(reply),
                frame => self.skip_stale(frame).map_err(older_server)?,
            }
        }
    }

    /// Deletes a group without members.
    pub fn delete_group(&mut self, name: &str) -> Result<(), ClientError> {
        self.group_admin(name, GroupAdminAction::Delete).map(|_| ())
    }

    fn group_admin(
        &mut self,
        name: &str,
        action: GroupAdminAction,
    ) -> Result<GroupsReply, ClientError> {
        let admin = GroupAdmin {
            group: name.to_string(),
            action,
        };
        self.groups_request(ClientFrame::GroupAdmin(admin))
    }

    fn groups_request(&mut self, request: ClientFrame) -> Result<GroupsReply, ClientError> {
        self.connection.send(&request)?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Groups(reply) => return Ok(reply),
                frame => self.skip_stale(frame)?,
            }
        }
    }
}

/// GroupsDetailRequest and GroupAdmin create/update are newer than the first servers with
/// groups: such a server does not know them and closes the connection with MalformedFrame.
/// The client encoded the frame itself, so that error says the server is older: the message
/// says so, and what to do.
fn older_server(error: ClientError) -> ClientError {
    match error {
        ClientError::Server {
            scope: ErrorScope::Connection,
            code: ErrorCode::MalformedFrame,
            message,
        } => ClientError::Server {
            scope: ErrorScope::Connection,
            code: ErrorCode::MalformedFrame,
            message: format!(
                "{message} (this request is newer than the flo server answering it: upgrade \
                 the server; `groups` without a name lists the groups on any server)"
            ),
        },
        other => other,
    }
}

fn one_group(reply: GroupsReply) -> Result<GroupInfo, ClientError> {
    let count = reply.groups.len();
    reply
        .groups
        .into_iter()
        .next()
        .filter(|_| count == 1)
        .ok_or_else(|| ClientError::Protocol {
            code: crate::protocol::ErrorCode::MalformedFrame,
            message: format!("expected one group in the answer, got {count}"),
        })
}

fn one_detail(reply: GroupsDetailReply) -> Result<GroupDetail, ClientError> {
    let count = reply.groups.len();
    reply
        .groups
        .into_iter()
        .next()
        .filter(|_| count == 1)
        .ok_or_else(|| ClientError::Protocol {
            code: crate::protocol::ErrorCode::MalformedFrame,
            message: format!("expected one group in the answer, got {count}"),
        })
}

/// Every group of a listing that the server answers a page at a time: `page(after)` asks for
/// the groups whose names sort after `after` (empty: from the first) and says whether more
/// follow. Stops at a page without groups, so a server that says `more` forever cannot loop;
/// names must go up across the whole listing (MalformedFrame otherwise), so a server that
/// sends the same page again and again cannot grow the list without end either (attack
/// round 11), and at most [`GROUPS_LISTED_MAX`] groups are kept.
fn every_page<T>(
    mut page: impl FnMut(&str) -> Result<(Vec<T>, bool), ClientError>,
    name: impl Fn(&T) -> &String,
) -> Result<Vec<T>, ClientError> {
    let mut groups: Vec<T> = Vec::new();
    loop {
        let after = groups
            .last()
            .map_or(String::new(), |group| name(group).clone());
        let (items, more) = page(&after)?;
        let mut previous = after.as_str();
        for item in &items {
            if !previous.is_empty() && name(item).as_str() <= previous {
                return Err(ClientError::Protocol {
                    code: crate::protocol::ErrorCode::MalformedFrame,
                    message: format!(
                        "the server listed group {:?} after {previous:?}: names must go up",
                        name(item)
                    ),
                });
            }
            previous = name(item);
        }
        if groups.len() + items.len() > GROUPS_LISTED_MAX {
            return Err(ClientError::Protocol {
                code: crate::protocol::ErrorCode::MalformedFrame,
                message: format!(
                    "the server listed over {GROUPS_LISTED_MAX} groups, more than any server \
                     limit allows"
                ),
            });
        }
        let progressed = !items.is_empty();
        groups.extend(items);
        if !more || !progressed {
            return Ok(groups);
        }
    }
}
